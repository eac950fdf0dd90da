{{ config(post_hook=[create_lookup_index(this, ['tenant_id', 'student_key'])]) }}

-- The academics tab: the student's programme (record_type 'program', its expected completion
-- the last end date of the student's classes in it) and each unit registration (record_type
-- 'registration', dated by the student's classes that teach the unit).
with students as (
    select tenant_id, student_key, program_zoho_id from {{ claimed_rows(ref('stg_students')) }} s
),
student_classes as (
    select e.tenant_id, e.student_key, c.program_zoho_id, c.moodle_course_id, c.start_date, c.end_date
    from {{ claimed_rows(source('canonical', 'enrollments')) }} e
    join {{ source('canonical', 'classes') }} c
        on c.tenant_id = e.tenant_id and c.class_key = e.class_key and c.deleted_at is null
    where e.deleted_at is null and e.student_key is not null
),
program_dates as (
    select tenant_id, student_key, program_zoho_id, min(start_date) as start_date, max(end_date) as end_date
    from student_classes
    group by tenant_id, student_key, program_zoho_id
),
unit_dates as (
    select sc.tenant_id, sc.student_key, uc.unit_code, min(sc.start_date) as start_date, max(sc.end_date) as end_date
    from student_classes sc
    join {{ ref('stg_unit_courses') }} uc
        on uc.tenant_id = sc.tenant_id and uc.moodle_course_id = sc.moodle_course_id
    group by sc.tenant_id, sc.student_key, uc.unit_code
),
programs as (
    select
        s.tenant_id,
        s.student_key,
        'program' as record_type,
        p.zoho_id,
        cast(null as varchar(32)) as unit_zoho_id,
        p.code,
        p.name,
        p.level,
        p.credits,
        cast(null as varchar(16)) as status,
        d.start_date,
        d.end_date
    from students s
    join {{ source('canonical', 'programs') }} p
        on p.tenant_id = s.tenant_id and p.zoho_id = s.program_zoho_id and p.deleted_at is null
    left join program_dates d
        on d.tenant_id = s.tenant_id and d.student_key = s.student_key and d.program_zoho_id = p.zoho_id
),
registrations as (
    select
        r.tenant_id,
        r.student_key,
        'registration' as record_type,
        r.zoho_id,
        r.unit_zoho_id,
        u.code,
        u.name,
        cast(null as varchar(32)) as level,
        u.credits,
        r.status,
        d.start_date,
        d.end_date
    from {{ claimed_rows(source('canonical', 'registrations')) }} r
    join students s on s.tenant_id = r.tenant_id and s.student_key = r.student_key
    left join {{ source('canonical', 'units') }} u
        on u.tenant_id = r.tenant_id and u.zoho_id = r.unit_zoho_id and u.deleted_at is null
    left join unit_dates d
        on d.tenant_id = r.tenant_id and d.student_key = r.student_key and d.unit_code = u.code
    where r.deleted_at is null
)
select *, {{ build_time() }} as built_at from programs
union all
select *, {{ build_time() }} as built_at from registrations
