{#
  Incremental builds of the per-student models: a build rebuilds only the students claimed from
  the mart refresh queue, which every canonical application fills (lib/warehouse/mart_refresh.py).
  The Dagster step claims the queue before dbt starts and deletes its claim after dbt succeeded;
  a `*` among the claimed students makes it a full build (`--full-refresh`) instead. Run by hand
  without a claim, an incremental build rebuilds nobody: use --full-refresh.
#}
{% macro claimed_students() -%}
  select distinct tenant_id, student_key from {{ this.incorporate(path={"identifier": "mart_refresh_queue"}) }}
  where claim is not null
{%- endmacro %}

{#
  A per-student relation, in a model's FROM: on an incremental build only the claimed students'
  rows of it, found through its (tenant_id, student_key) index; the whole relation on a full one.
  The claimed students come first in a CROSS JOIN, which SQLite keeps as the join order: given
  the choice, it scanned the tenant's rows by another index and filtered them.
#}
{% macro claimed_rows(relation) -%}
  {%- if is_incremental() -%}
  (select claimed_.* from ({{ claimed_students() }}) claimed_students_
   cross join {{ relation }} claimed_
   where claimed_.tenant_id = claimed_students_.tenant_id and claimed_.student_key = claimed_students_.student_key)
  {%- else -%}
  {{ relation }}
  {%- endif -%}
{%- endmacro %}

{#
  The pre-hook of every per-student model: on an incremental build, remove the claimed students'
  rows, in the transaction that then inserts their new ones (none for a student deleted since),
  so a reader sees either the old rows or the new.
#}
{% macro delete_claimed_students() -%}
  {%- if is_incremental() -%}
  delete from {{ this }} where (tenant_id, student_key) in ({{ claimed_students() }})
  {%- endif -%}
{%- endmacro %}
