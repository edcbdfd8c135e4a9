"""A wave through a real CeleryExecutor deployment: two Celery workers on a Redis broker, PostgreSQL for
Airflow's metadata and Celery's results, the api-server, scheduler and dag-processor as separate
processes (`sandboxes/airflow_cluster.py`), the eBox sandbox over HTTPS and OpenSSH's sshd.

The same seeded outbox is first run with `dag.test()` (the reference), then, from a clean outbox,
through the Celery deployment with small chunks so that the mapped render and eBox tasks spread over
both workers. The per-letter outcome must be the same, every letter delivered exactly once.
"""

from __future__ import annotations

import json
import shutil

import pytest

from include.dijlepost.ebox.client import idempotency_key
from sandboxes.airflow_cluster import REDIS_URL, AirflowCluster
from tests.dags.conftest import pg_connection
from tests.dags.test_wave_runs import inbox_manifest_ids, letters, seed
from tests.support.sshd import REMOTE_DIRS

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(420)]
FINAL = {"delivered_ebox", "handed_to_print", "quarantined"}
LETTERS = 240
CHUNK = 30


@pytest.fixture(scope="session")
def redis_broker():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"no Redis broker at {REDIS_URL} ({exc}): scripts/system-deps installs and starts redis-server",
            pytrace=False,
        )
    return REDIS_URL


def outcome(db) -> dict[str, tuple]:
    return {i: (r["status"], r["channel"], r["decision_rule"]) for i, r in letters(db).items()}


def assert_each_letter_delivered_once(db, ebox, sshd) -> None:
    rows = letters(db)
    assert {r["status"] for r in rows.values()} <= FINAL, "a letter is not in a final state"
    ebox_ids = sorted(i for i, r in rows.items() if r["status"] == "delivered_ebox")
    paper_ids = sorted(i for i, r in rows.items() if r["status"] == "handed_to_print")
    assert ebox_ids and paper_ids
    keys = [p["idempotency_key"] for p in ebox.state.publications() if p["code"] != "NO_DIGITAL_USER"]
    assert sorted(keys) == sorted(idempotency_key(i) for i in ebox_ids), (
        "eBox holds a letter twice or misses one"
    )
    assert sorted(inbox_manifest_ids(sshd)) == paper_ids, "print inbox holds a letter twice or misses one"


def reset_world(db, ebox, sshd) -> None:
    db.execute("SELECT set_config('dijlepost.audit_break_glass', 'on', true)")  # as the db fixture does
    db.execute("TRUNCATE letters, letter_events, ebox_activation, print_batches RESTART IDENTITY")
    db.commit()
    ebox.state.reset()
    for name in REMOTE_DIRS:
        for entry in (sshd.root / name).iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def test_wave_on_two_celery_workers_matches_the_local_run(
    redis_broker, db, ebox, sshd, printhouse_dirs, pipeline_url, run_wave, tmp_path
):
    seed(db, ebox, "finance", LETTERS, seed_no=31)
    run_wave("letters_finance")
    reference = outcome(db)
    assert_each_letter_delivered_once(db, ebox, sshd)

    reset_world(db, ebox, sshd)
    seed(db, ebox, "finance", LETTERS, seed_no=31)
    assert {s for s, _, _ in outcome(db).values()} == {"pending"}

    work = tmp_path / "celery"
    env = {
        "AIRFLOW_CONN_DIJLEPOST_DB": json.dumps(pg_connection(pipeline_url)),
        "AIRFLOW_CONN_EBOX_DEFAULT": json.dumps(ebox.airflow_connection()),
        "AIRFLOW_CONN_PRINTHOUSE_SFTP": json.dumps(sshd.airflow_connection()),
        # One machine here; across machines these two must be one shared volume (docs/scaling.md).
        "DIJLEPOST_DOCUMENT_ROOT": str(work / "shared" / "documents"),
        "DIJLEPOST_PRINT_WORK_DIR": str(work / "shared" / "print-batches"),
        "DIJLEPOST_RETRY_DELAY_SECONDS": "5",
    }
    with AirflowCluster(
        work,
        env,
        executor="CeleryExecutor",
        parallelism=8,
        celery_workers=("worker1", "worker2"),
        worker_concurrency=2,
    ) as cluster:
        cluster.wait_for_dags(["letters_finance"])
        run_id = cluster.trigger("letters_finance", {"chunk_size": CHUNK})
        states = cluster.wait([("letters_finance", run_id)], timeout=300)
        tis = cluster.task_instances("letters_finance", run_id)

    assert states[("letters_finance", run_id)] == "success", f"run failed; logs in {work / 'logs'}"
    renders = [t for t in tis if t["task_id"] == "chunk.render_letters"]
    assert len(renders) == LETTERS // CHUNK and {t["state"] for t in renders} == {"success"}
    assert {t["queue"] for t in renders} == {"render"}
    assert {
        t["queue"]
        for t in tis
        if t["task_id"] in ("chunk.deliver_to_ebox", "chunk.hand_over_to_print") and t["state"] == "success"
    } == {"delivery"}
    ran_on = {t["hostname"] for t in tis if t["state"] == "success"}
    assert ran_on == {"worker1", "worker2"}, f"tasks ran on {ran_on}"
    assert outcome(db) == reference
    assert_each_letter_delivered_once(db, ebox, sshd)
