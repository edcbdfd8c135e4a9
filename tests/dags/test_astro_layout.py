"""The project runs unchanged in an Astronomer Runtime image: there the project root
(/usr/local/airflow) is on PYTHONPATH and nothing of ours is pip-installed. Parse a copy of the
project laid out that way, in a fresh interpreter, and check its DAGs load from the copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_FILES = (
    "dags",
    "plugins",
    "include",
    "include/templates",
    "tests",
    "requirements.txt",
    "astro-config.yaml",
    "Dockerfile",
    "README.md",
    "Makefile",
    ".ci/run",
)


def test_astronomer_project_layout_is_complete():
    missing = [name for name in EXPECTED_FILES if not (ROOT / name).exists()]
    assert missing == []


def test_requirements_are_all_pinned():
    lines = [l.split("#")[0].strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    packages = [l for l in lines if l and not l.startswith("-")]
    assert packages and all("==" in l for l in packages), [l for l in packages if "==" not in l]
    for core in (
        "apache-airflow==3.3.",
        "apache-airflow-providers-sftp==",
        "apache-airflow-providers-postgres==",
        "apache-airflow-providers-standard==",
        "pandas==",
        "fpdf2==",
    ):
        assert any(l.startswith(core) for l in packages), core


def test_dags_parse_from_a_copy_with_only_the_project_root_on_the_path(tmp_path):
    project = tmp_path / "usr-local-airflow"
    for name in ("dags", "include", "plugins"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "import json, include.dijlepost\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder='dags')\n"
        "print(json.dumps({'errors': list(bag.import_errors), 'dags': sorted(bag.dag_ids),\n"
        "                  'package': include.dijlepost.__file__}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        PYTHONPATH=str(project), AIRFLOW_HOME=str(tmp_path / "home"), AIRFLOW__CORE__LOAD_EXAMPLES="False"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    assert {"letters_finance", "letters_gas", "letters_economy_housing"} <= set(result["dags"])
    assert result["package"].startswith(str(project)), "the copy's include/ must be the one imported"


def test_the_deployment_files_declare_the_pools_the_dags_use():
    """airflow_settings.yaml (local `astro dev`) and astro-config.yaml (the deployment) create exactly the
    pools of include.dijlepost.airflow_support, with its slots where they are fixed."""
    import yaml

    from include.dijlepost.airflow_support import POOL_SPECS

    specs = {spec.name: spec for spec in POOL_SPECS.values()}
    local = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]["pools"]
    deployed = yaml.safe_load((ROOT / "astro-config.yaml").read_text())["deployment"]["pools"]
    for pools, name_key, slots_key in ((local, "pool_name", "pool_slot"), (deployed, "name", "slots")):
        assert sorted(p[name_key] for p in pools) == sorted(specs)
        for pool in pools:
            fixed = specs[pool[name_key]].slots
            assert fixed is None or pool[slots_key] == fixed, pool
            assert isinstance(pool[slots_key], int) and pool[slots_key] >= 1, pool
