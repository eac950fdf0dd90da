{{ config(post_hook=[
    create_lookup_index(this, ['tenant_id', 'moodle_user_id']),
    create_lookup_index(this, ['tenant_id', 'zoho_id']),
]) }}

-- The profile block of the student dashboard: who the student is in both systems.
-- The API reads one row of this table per request, by an indexed lookup.
select
    tenant_id,
    student_key,
    moodle_user_id,
    zoho_id,
    student_number,
    first_name,
    last_name,
    trim(coalesce(first_name, '') || ' ' || coalesce(last_name, '')) as full_name,
    email,
    program_zoho_id,
    status,
    identity_match,
    source_modified_at,
    updated_at as profile_updated_at
from {{ ref('stg_students') }}
