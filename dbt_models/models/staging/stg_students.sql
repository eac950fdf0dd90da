-- Current (not soft-deleted) students of every tenant.
select
    tenant_id,
    student_key,
    zoho_id,
    moodle_user_id,
    student_number,
    first_name,
    last_name,
    email,
    program_zoho_id,
    status,
    identity_match,
    source_modified_at,
    updated_at
from {{ source('canonical', 'students') }}
where deleted_at is null
