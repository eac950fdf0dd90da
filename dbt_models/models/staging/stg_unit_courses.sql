{{ config(post_hook=[create_lookup_index(this, ['tenant_id', 'moodle_course_id'])]) }}

-- Which Moodle course teaches which unit: an assignment's grade item carries the unit code as its
-- idnumber (the mapping's `moodle.unit_link`).
select distinct
    tenant_id,
    cast({{ json_text('payload', 'courseid') }} as bigint) as moodle_course_id,
    trim({{ json_text('payload', 'idnumber') }}) as unit_code
from {{ source('raw', 'raw_moodle_grade_items') }}
where source = 'moodle'
    and entity = 'grade_items'
    and deleted_at is null
    and trim(coalesce({{ json_text('payload', 'idnumber') }}, '')) <> ''
