"""The manifest the definitions load is re-made when the dbt project's files change (a checkout
that pulled new models once loaded the old manifest, and `dbt_marts` failed on the new models)."""

import shutil

from integration_pipelines.defs.marts.project import DBT_PROJECT_DIR, project_sources_digest


def test_the_digest_follows_the_models_and_ignores_dbts_own_output(tmp_path):
    project = tmp_path / "dbt_models"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    before = project_sources_digest(project)

    (project / "target").mkdir()
    (project / "target" / "manifest.json").write_text("{}")
    assert project_sources_digest(project) == before

    (project / "models" / "marts" / "new_mart.sql").write_text("select 1 as one")
    assert project_sources_digest(project) != before
