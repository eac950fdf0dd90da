{#
  An index for the API's lookups on a mart. The dialects disagree on where the schema goes:
  PostgreSQL qualifies the table, SQLite qualifies the index name. Adapter dispatch picks the form.
  `byte_order` columns are compared in byte order ("C" collation on PostgreSQL, SQLite's BINARY
  default), so that a prefix search is a range over the index.
#}
{% macro create_lookup_index(relation, columns, byte_order=[]) -%}
  {{ return(adapter.dispatch('create_lookup_index', 'integration_pipelines')(relation, columns, byte_order)) }}
{%- endmacro %}

{% macro default__create_lookup_index(relation, columns, byte_order=[]) -%}
  {%- set parts = [] -%}
  {%- for column in columns -%}
    {%- do parts.append(column ~ (' collate "C"' if column in byte_order else '')) -%}
  {%- endfor -%}
  create index if not exists "ix_{{ relation.identifier }}_{{ columns | join('_') }}"
    on {{ relation }} ({{ parts | join(', ') }})
{%- endmacro %}

{% macro sqlite__create_lookup_index(relation, columns, byte_order=[]) -%}
  create index if not exists "{{ relation.schema }}"."ix_{{ relation.identifier }}_{{ columns | join('_') }}"
    on "{{ relation.identifier }}" ({{ columns | join(', ') }})
{%- endmacro %}
