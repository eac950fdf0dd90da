{#
  An index for the API's lookups on a mart. The dialects disagree on where the schema goes:
  PostgreSQL qualifies the table, SQLite qualifies the index name. Adapter dispatch picks the form.
#}
{% macro create_lookup_index(relation, columns) -%}
  {{ return(adapter.dispatch('create_lookup_index', 'integration_pipelines')(relation, columns)) }}
{%- endmacro %}

{% macro default__create_lookup_index(relation, columns) -%}
  create index if not exists "ix_{{ relation.identifier }}_{{ columns | join('_') }}"
    on {{ relation }} ({{ columns | join(', ') }})
{%- endmacro %}

{% macro sqlite__create_lookup_index(relation, columns) -%}
  create index if not exists "{{ relation.schema }}"."ix_{{ relation.identifier }}_{{ columns | join('_') }}"
    on "{{ relation.identifier }}" ({{ columns | join(', ') }})
{%- endmacro %}
