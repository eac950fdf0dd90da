{{ config(post_hook=[create_lookup_index(this, ['tenant_id', 'student_key'])]) }}

-- The grades tab: every grade of the student (Moodle assignment grades and the BTEC grades
-- recorded in Zoho), with the unit it assesses, and on every row the student's summary.
--
-- The summary counts units, not grades: a unit's grade is the one Zoho records (the official
-- record), else the latest Moodle grade of an assignment assessing it, on the BTEC scale
-- (converted by the mapping's thresholds for numeric grades). Average points per credit is the
-- credit-weighted mean of the mapping's points per credit (var btec_points_per_credit; the
-- Dagster step passes the mapping's values), over the graded units.
{% set points = var('btec_points_per_credit') %}
with grades as (
    select
        g.tenant_id,
        g.student_key,
        g.grade_key,
        g.source,
        g.unit_zoho_id,
        u.code as unit_code,
        u.name as unit_name,
        u.credits,
        coalesce(g.btec_grade, g.btec_equivalent) as btec_grade,
        g.percentage,
        g.graded_at,
        cast(null as text) as feedback
    from {{ claimed_rows(source('canonical', 'grades')) }} g
    join {{ ref('stg_students') }} s on s.tenant_id = g.tenant_id and s.student_key = g.student_key
    left join {{ source('canonical', 'units') }} u
        on u.tenant_id = g.tenant_id and u.zoho_id = g.unit_zoho_id and u.deleted_at is null
    where g.deleted_at is null
),
ranked as (
    select
        grades.*,
        case
            when unit_zoho_id is null or btec_grade is null then 0
            when row_number() over (
                partition by tenant_id, student_key, unit_zoho_id
                order by case when source = 'zoho' then 0 else 1 end, graded_at desc nulls last, grade_key
            ) = 1 then 1
            else 0
        end as unit_grade
    from grades
),
weighed as (
    select
        ranked.*,
        case when unit_grade = 1 then
            case btec_grade
                {% for grade, value in points.items() %}when '{{ grade }}' then {{ value }} {% endfor %}
            end
        end as points
    from ranked
)
select
    tenant_id,
    student_key,
    grade_key,
    source,
    unit_zoho_id,
    unit_code,
    unit_name,
    credits,
    btec_grade,
    percentage,
    graded_at,
    feedback,
    unit_grade,
    sum(case when unit_grade = 1 and btec_grade = 'Distinction' then 1 else 0 end) over w as distinction_count,
    sum(case when unit_grade = 1 and btec_grade = 'Merit' then 1 else 0 end) over w as merit_count,
    sum(case when unit_grade = 1 and btec_grade = 'Pass' then 1 else 0 end) over w as pass_count,
    sum(case when unit_grade = 1 and btec_grade = 'Refer' then 1 else 0 end) over w as refer_count,
    sum(unit_grade) over w as graded_units,
    sum(case when unit_grade = 1 then coalesce(credits, 0) else 0 end) over w as graded_credits,
    sum(case when unit_grade = 1 then points * credits end) over w * 1.0
        / nullif(sum(case when unit_grade = 1 and credits is not null then credits else 0 end) over w, 0)
        as average_points_per_credit,
    {{ build_time() }} as built_at
from weighed
window w as (partition by tenant_id, student_key)
