{# A dbt test: no two rows share these columns (a key over several columns, e.g. tenant and student). #}
{% test unique_together(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
