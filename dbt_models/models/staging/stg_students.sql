{{ config(post_hook=[create_lookup_index(this, ['tenant_id', 'student_key'])]) }}

-- Current (not soft-deleted) students of every tenant, with the Moodle username search matches on.
select
    s.tenant_id,
    s.student_key,
    s.zoho_id,
    s.moodle_user_id,
    s.student_number,
    s.first_name,
    s.last_name,
    s.email,
    lower({{ json_text('u.payload', 'username') }}) as username,
    s.photo_url,
    s.phone,
    s.date_of_birth,
    s.address,
    s.city,
    s.country,
    s.program_zoho_id,
    s.status,
    s.identity_match,
    s.source_modified_at,
    s.updated_at
from {{ claimed_rows(source('canonical', 'students')) }} s
left join {{ source('raw', 'raw_moodle_users') }} u
    on u.tenant_id = s.tenant_id
    and u.source = 'moodle'
    and u.entity = 'users'
    and u.record_id = cast(s.moodle_user_id as varchar(64))
    and u.deleted_at is null
where s.deleted_at is null
