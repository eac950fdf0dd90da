{{ config(post_hook=[create_lookup_index(this, ['tenant_id', 'moodle_course_id'])]) }}

-- Who teaches each Moodle course: its live enrolments holding the (editing) teacher role.
select
    e.tenant_id,
    cast({{ json_text('e.payload', 'courseid') }} as bigint) as moodle_course_id,
    cast({{ json_text('e.payload', 'userid') }} as bigint) as teacher_moodle_user_id,
    trim(coalesce({{ json_text('u.payload', 'firstname') }}, '') || ' ' || coalesce({{ json_text('u.payload', 'lastname') }}, '')) as teacher_name,
    lower({{ json_text('u.payload', 'email') }}) as teacher_email
from {{ source('raw', 'raw_moodle_enrolments') }} e
join {{ source('raw', 'raw_moodle_users') }} u
    on u.tenant_id = e.tenant_id
    and u.source = 'moodle'
    and u.entity = 'users'
    and u.record_id = cast({{ json_text('e.payload', 'userid') }} as varchar(64))
    and u.deleted_at is null
where e.source = 'moodle'
    and e.entity = 'enrolments'
    and e.deleted_at is null
    and ({{ has_moodle_role('e.payload', 'editingteacher') }} or {{ has_moodle_role('e.payload', 'teacher') }})
