{{ config(post_hook=[create_lookup_index(this, ['tenant_id', 'student_key'])]) }}

-- The classes tab: each class the student is enrolled in, one row per teacher of its Moodle
-- course (a row with no teacher when it has none). Whether a class is active or completed
-- depends on today's date, so the API decides it from end_date.
select
    e.tenant_id,
    e.student_key,
    c.class_key,
    c.zoho_id,
    c.name,
    c.program_zoho_id,
    c.moodle_course_id,
    c.start_date,
    c.end_date,
    e.status as enrollment_status,
    t.teacher_moodle_user_id,
    t.teacher_name,
    t.teacher_email,
    {{ build_time() }} as built_at
from {{ claimed_rows(source('canonical', 'enrollments')) }} e
join {{ ref('stg_students') }} s on s.tenant_id = e.tenant_id and s.student_key = e.student_key
join {{ source('canonical', 'classes') }} c
    on c.tenant_id = e.tenant_id and c.class_key = e.class_key and c.deleted_at is null
left join {{ ref('stg_class_teachers') }} t
    on t.tenant_id = c.tenant_id and t.moodle_course_id = c.moodle_course_id
where e.deleted_at is null
