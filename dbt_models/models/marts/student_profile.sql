{{ config(post_hook=[
    create_lookup_index(this, ['tenant_id', 'student_key']),
    create_lookup_index(this, ['tenant_id', 'moodle_user_id']),
    create_lookup_index(this, ['tenant_id', 'zoho_id']),
    create_lookup_index(this, ['tenant_id', 'number_key'], byte_order=['number_key']),
    create_lookup_index(this, ['tenant_id', 'email'], byte_order=['email']),
    create_lookup_index(this, ['tenant_id', 'username'], byte_order=['username']),
    create_lookup_index(this, ['tenant_id', 'name_key'], byte_order=['name_key']),
    create_lookup_index(this, ['tenant_id', 'first_key'], byte_order=['first_key']),
    create_lookup_index(this, ['tenant_id', 'last_key'], byte_order=['last_key']),
]) }}

-- The profile tab: who the student is in both systems. One row per current student; the API
-- finds it by an indexed lookup on any identifier, and search is a range over the *_key columns
-- (lower-cased names, the upper-cased student number).
select
    tenant_id,
    student_key,
    moodle_user_id,
    zoho_id,
    student_number,
    upper(trim(student_number)) as number_key,
    first_name,
    last_name,
    trim(coalesce(first_name, '') || ' ' || coalesce(last_name, '')) as full_name,
    lower(trim(coalesce(first_name, '') || ' ' || coalesce(last_name, ''))) as name_key,
    lower(first_name) as first_key,
    lower(last_name) as last_key,
    email,
    username,
    photo_url,
    phone,
    date_of_birth,
    address,
    city,
    country,
    program_zoho_id,
    status,
    identity_match,
    updated_at,
    {{ build_time() }} as built_at
from {{ claimed_rows(ref('stg_students')) }} s
