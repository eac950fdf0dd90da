{#
  Where SQLite and PostgreSQL spell the same thing differently, one macro per thing, and dbt's
  adapter dispatch picks the spelling: `sqlite__…` on SQLite, `default__…` (PostgreSQL) elsewhere.
#}

{# The text of a top-level key of a raw JSON payload (SQLite keeps JSON as text, PostgreSQL as jsonb). #}
{% macro json_text(column, key) -%}
  {{ return(adapter.dispatch('json_text', 'integration_pipelines')(column, key)) }}
{%- endmacro %}
{% macro default__json_text(column, key) -%} ({{ column }} ->> '{{ key }}') {%- endmacro %}
{% macro sqlite__json_text(column, key) -%} json_extract({{ column }}, '$.{{ key }}') {%- endmacro %}

{# Whether a Moodle enrolment payload's `roles` list holds the role with this shortname. #}
{% macro has_moodle_role(column, role) -%}
  {{ return(adapter.dispatch('has_moodle_role', 'integration_pipelines')(column, role)) }}
{%- endmacro %}
{% macro default__has_moodle_role(column, role) -%}
  (({{ column }} -> 'roles') @> '[{"shortname": "{{ role }}"}]'::jsonb)
{%- endmacro %}
{% macro sqlite__has_moodle_role(column, role) -%}
  exists (select 1 from json_each({{ column }}, '$.roles') where json_extract(value, '$.shortname') = '{{ role }}')
{%- endmacro %}

{# When this build ran, in UTC (SQLite: naive UTC text, as the canonical tables store timestamps). #}
{% macro build_time() -%}
  {{ return(adapter.dispatch('build_time', 'integration_pipelines')()) }}
{%- endmacro %}
{% macro default__build_time() -%} now() {%- endmacro %}
{% macro sqlite__build_time() -%} strftime('%Y-%m-%d %H:%M:%f', 'now') {%- endmacro %}

{#
  An amount of money as whole cents, so sums are exact: PostgreSQL's NUMERIC(12, 2), SQLite's
  exact decimal text (lib/warehouse/types.py: Money). Cents below 2^53 survive SQLite's real exactly.
#}
{% macro money_cents(column) -%}
  {{ return(adapter.dispatch('money_cents', 'integration_pipelines')(column)) }}
{%- endmacro %}
{% macro default__money_cents(column) -%} cast(round({{ column }} * 100) as bigint) {%- endmacro %}
{% macro sqlite__money_cents(column) -%} cast(round(cast({{ column }} as real) * 100) as integer) {%- endmacro %}

{#
  Statistics for a table dbt just built, so that the next model joining it is planned against its
  real size. PostgreSQL plans an unanalysed table from a guess: it took the fresh stg_students
  for 6,000 rows instead of 25,000, and student_classes then re-read every teacher for each
  enrollment (27 s of a 31 s build at 25,000 students). SQLite plans from its indexes and is left
  without statistics, as the warehouse's own statements expect.
#}
{% macro analyze_for_planner(relation) -%}
  {{ return(adapter.dispatch('analyze_for_planner', 'integration_pipelines')(relation)) }}
{%- endmacro %}
{# An incremental build changed a few students' rows: the statistics still hold, and ANALYZE samples the table. #}
{% macro default__analyze_for_planner(relation) -%} {% if not is_incremental() %}analyze {{ relation }}{% endif %} {%- endmacro %}
{% macro sqlite__analyze_for_planner(relation) -%} {%- endmacro %}

{#
  SQLite has one writer. A model waits for another writer's transaction (a sync's step beside an
  event batch's refresh) as long as the warehouse's own writers wait (SQLITE_BUSY_TIMEOUT_MS in
  lib/warehouse/engine.py, passed by lib/warehouse/dbt_env.py), where dbt-sqlite's connection
  gives up after 5 s.
  PostgreSQL writers wait for each other's row locks already.
#}
{% macro wait_for_other_writers() -%}
  {{ return(adapter.dispatch('wait_for_other_writers', 'integration_pipelines')()) }}
{%- endmacro %}
{% macro default__wait_for_other_writers() -%} {%- endmacro %}
{% macro sqlite__wait_for_other_writers() -%}
  pragma busy_timeout = {{ env_var('INTEGRATION_SQLITE_BUSY_TIMEOUT_MS', '5000') | int }}
{%- endmacro %}
{#
  Then the model's transaction takes the write lock before anything else (a write that changes
  nothing takes it, waiting as long as the busy timeout allows). dbt begins with a read (`drop
  table if exists` of a backup that is not there), and a transaction that has read cannot start
  writing once another writer has committed since: SQLite answers "database is locked" at once,
  without waiting. A sync's full build failed so beside event batches.
#}
{% macro write_first() -%}
  {{ return(adapter.dispatch('write_first', 'integration_pipelines')()) }}
{%- endmacro %}
{% macro default__write_first() -%} {%- endmacro %}
{% macro sqlite__write_first() -%}
  update mart_refresh_queue set claim = claim where 0 = 1
{%- endmacro %}
