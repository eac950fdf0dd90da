{{ config(post_hook=[
    create_lookup_index(this, ['tenant_id', 'student_key']),
    create_lookup_index(this, ['tenant_id', 'zoho_id']),
]) }}

-- The finance tab: one row per payment line, with the student's account in that currency on
-- every row (the API reads it from the first): everything due (every line not refunded), what
-- is paid, what is outstanding, and the last payment. Amounts are whole cents, exact on both
-- backends; the API renders them as decimal strings.
with lines as (
    select
        p.tenant_id,
        p.student_key,
        p.payment_key,
        p.zoho_id,
        p.kind,
        {{ money_cents('p.amount') }} as amount_cents,
        p.currency,
        p.method,
        p.status,
        p.due_date,
        p.paid_on
    from {{ claimed_rows(source('canonical', 'payments')) }} p
    join {{ ref('stg_students') }} s on s.tenant_id = p.tenant_id and s.student_key = p.student_key
    where p.deleted_at is null
)
select
    lines.*,
    sum(case when status <> 'refunded' or status is null then amount_cents else 0 end)
        over (partition by tenant_id, student_key, currency) as total_fees_cents,
    sum(case when status = 'paid' then amount_cents else 0 end)
        over (partition by tenant_id, student_key, currency) as paid_cents,
    sum(case when status <> 'refunded' or status is null then amount_cents else 0 end)
        over (partition by tenant_id, student_key, currency)
    - sum(case when status = 'paid' then amount_cents else 0 end)
        over (partition by tenant_id, student_key, currency) as outstanding_cents,
    max(case when status = 'paid' then paid_on end)
        over (partition by tenant_id, student_key, currency) as last_payment_on,
    first_value(case when status = 'paid' then amount_cents end) over (
        partition by tenant_id, student_key, currency
        order by case when status = 'paid' then 0 else 1 end, paid_on desc, payment_key
        rows between unbounded preceding and unbounded following
    ) as last_payment_cents,
    {{ build_time() }} as built_at
from lines
