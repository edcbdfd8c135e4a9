"""`make demo`: the three wave DAGs on embedded defaults, end to end, and what happened.

1. brings up an embedded PostgreSQL (or uses DIJLEPOST_DATABASE_URL), the eBox sandbox over HTTPS
   and the print house's SFTP server, all on loopback and kept under var/demo/;
2. migrates the outbox schema and Airflow's metadata database (the same PostgreSQL);
3. imports a realistic demo set with `dijlepost letters import` (and shows the rows it refuses),
   registers who has an active eBox, sets each department's rollout phase;
4. runs letters_finance, letters_gas and letters_economy_housing once each;
5. prints letters per department, status, channel and rule, and where the PDFs and batches are.
Rerunning is safe: the import reports duplicates, nothing is sent twice, new runs find no work.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from include.dijlepost.settings import PROJECT_ROOT

VAR = Path(os.environ.get("DIJLEPOST_DEMO_DIR", PROJECT_ROOT / "var" / "demo"))
WAVE_DAGS = ["letters_finance", "letters_gas", "letters_economy_housing"]
POOLS = [("rendering", os.cpu_count() or 2, "chunks rendered at once (CPU-bound: one per core)"),
         ("ebox_publication", 4, "concurrent eBox publication tasks"),
         ("print_house_sftp", 1, "one SFTP session to the print house at a time")]
DEMO_PHASES = {
    "finance": ("live", "wave 1: the financial service is digital"),
    "gas": ("pilot", "wave 2: GAS pilot with a group of volunteers before the summer"),
    "economy_housing": ("shadow", "wave 3: Economy and Housing measures the effect before going live"),
}


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def _pseudonym_key() -> str:
    path = VAR / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def main() -> int:
    started = time.monotonic()
    # The in-process SFTP sandbox logs every connection at INFO; the demo shows what dijlepost did.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    VAR.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DIJLEPOST_PSEUDONYM_KEY", _pseudonym_key())
    os.environ.setdefault("DIJLEPOST_DOCUMENT_ROOT", str(VAR / "documents"))
    os.environ.setdefault("DIJLEPOST_PRINT_WORK_DIR", str(VAR / "print-batches"))

    from include.dijlepost import cli
    from include.dijlepost.db.connection import connect
    from demo import dataset
    from demo.services import airflow_env, start_database
    from include.dijlepost.ebox.sandbox import SandboxServer
    from include.dijlepost.printhouse.sandbox import PrintHouseSftpServer
    from include.dijlepost.recipients import pseudonym
    from include.dijlepost.rollout import set_phase
    from include.dijlepost.settings import Settings

    settings = Settings.from_env()
    with ExitStack() as stack:
        say("starting PostgreSQL, the eBox sandbox (HTTPS) and the print-house SFTP server on loopback")
        db, pg = start_database(VAR)
        if pg is not None:
            stack.callback(pg.cleanup)
        ebox = SandboxServer(VAR / "ebox-sandbox", state_path=VAR / "ebox-sandbox" / "state.sqlite").start()
        stack.callback(ebox.stop)
        sftp = PrintHouseSftpServer(VAR / "printhouse").start()
        stack.callback(sftp.stop)
        print(f"    database: {'embedded PostgreSQL in ' + str(VAR / 'pgdata') if db.embedded else db.dijlepost_url}")
        print(f"    eBox sandbox: {ebox.base_url}   print house: sftp://{sftp.host}:{sftp.port}")

        say("migrating the outbox schema")
        cli.main(["--database-url", db.dijlepost_url, "db", "migrate"])

        say("seeding the demo letters")
        data = dataset.build()
        import_file = _write_jsonl(VAR / "outbox-import.jsonl", data.letters)
        cli.main(["--database-url", db.dijlepost_url, "letters", "import", str(import_file)])
        say("a file with bad rows, to show what `letters import` refuses")
        cli.main(["--database-url", db.dijlepost_url, "letters", "import",
                  str(_write_jsonl(VAR / "bad-rows.jsonl", data.refused_rows))])
        with connect(db.dijlepost_url) as conn:
            _insert_direct_rows(conn, data.direct_rows)
            for (kind, rid), exclusive in data.ebox_active.items():
                ebox.state.register_recipient(kind, rid, active=True, exclusively_ebox=exclusive,
                                              no_digital_user=(kind, rid) in data.no_digital_user)
            key = settings.pseudonym_key
            for kind, rid in data.paper_exempt:
                conn.execute("INSERT INTO paper_exemptions (recipient_pseudonym, added_by, reason) "
                             "VALUES (%s, 'digipunt Mechelen', 'no internet at home: keeps paper') "
                             "ON CONFLICT DO NOTHING", (pseudonym(key, kind, rid),))
            conn.commit()
            pilot = sorted(pseudonym(key, k, r) for k, r in data.pilot)
            for department, (phase, reason) in DEMO_PHASES.items():
                set_phase(conn, department, phase, reason, "demo administrator",
                          pilot if phase == "pilot" else None)
        cli.main(["--database-url", db.dijlepost_url, "rollout", "show"])

        env = airflow_env(PROJECT_ROOT, VAR, db, ebox.airflow_connection(), sftp.airflow_connection())
        say("migrating Airflow's metadata database (first run takes a few seconds)")
        _run([sys.executable, "-m", "airflow", "db", "migrate"], env, VAR / "logs" / "airflow-db-migrate.log")
        for pool, slots, what in POOLS:
            _run([sys.executable, "-m", "airflow", "pools", "set", pool, str(slots), what], env,
                 VAR / "logs" / f"airflow-pool-{pool}.log")
        say(f"running {', '.join(WAVE_DAGS)} (task logs in {VAR / 'logs'})")
        for dag_id in WAVE_DAGS:
            t0 = time.monotonic()
            # Small chunks, so that the demo shows the fan-out of rendering and eBox delivery.
            rc = _run([sys.executable, "-m", "demo.run_waves", "--conf", '{"chunk_size": 100}',
                       dag_id], env,
                      VAR / "logs" / f"{dag_id}.log")
            print(f"    {dag_id}: {'success' if rc == 0 else 'FAILED'} in {time.monotonic() - t0:.0f}s")
            if rc != 0:
                print(f"    see {VAR / 'logs' / f'{dag_id}.log'}", file=sys.stderr)
                return rc

        say("the print house answers: batches checked, 1 letter in 25 rejected, 1 in 20 returned by the post")
        from include.dijlepost.printhouse.simulator import PrinterBehaviour, process_inbox

        answered = process_inbox(sftp.root, PrinterBehaviour(reject_every=25, return_every=20))
        print(f"    {len(answered['batches'])} batch(es) acknowledged in {sftp.root / 'outbox'}")
        # What the print_house_acknowledgements DAG does every 15 minutes, run here directly to keep the
        # demo short: read the answers over SFTP (pinned host key) and move the letters on.
        from include.dijlepost.outbox import RunContext
        from include.dijlepost.printhouse.acks import collect, summarise
        from include.dijlepost.printhouse.hook import PrintHouseHook

        os.environ["AIRFLOW_CONN_PRINTHOUSE_SFTP"] = env["AIRFLOW_CONN_PRINTHOUSE_SFTP"]
        logging.getLogger("paramiko").setLevel(logging.WARNING)
        hook = PrintHouseHook()
        with connect(db.dijlepost_url) as conn, hook.get_managed_conn() as remote:
            read = summarise(collect(conn, remote, hook.outbox_dir, RunContext(
                dag_id="print_house_acknowledgements", run_id="demo", task_id="collect_print_house_files")))
        print(f"    read {read['files']} file(s) from the print house: {read.get('accepted', 0)} accepted "
              f"(printed and posted), {read.get('rejected', 0)} rejected, {read.get('returned', 0)} later returned")

        say("what happened")
        cli.main(["--database-url", db.dijlepost_url, "letters", "status"])
        _print_where(db.dijlepost_url, ebox, sftp)

        say("the audit trail and today's rollout evaluation (docs/audit.md, docs/evaluation.md)")
        print("$ dijlepost audit verify")
        cli.main(["--database-url", db.dijlepost_url, "audit", "verify"])
        from datetime import datetime
        from zoneinfo import ZoneInfo

        today = datetime.now(ZoneInfo("Europe/Brussels")).date().isoformat()
        rc = _run([sys.executable, "-m", "demo.run_waves", "--conf", json.dumps({"day": today}),
                   "letters_evaluation"], {**env, "DIJLEPOST_REPORTS_DIR": str(VAR / "reports")},
                  VAR / "logs" / "letters_evaluation.log")
        print(f"    letters_evaluation: {'success' if rc == 0 else 'FAILED'}; report: "
              f"{VAR / 'reports' / 'day' / today / 'report.html'}")
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s")
    return 0


def _insert_direct_rows(conn, rows: list[dict]) -> None:
    """What a department system does when it writes into the outbox table itself: no validation."""
    for r in rows:
        conn.execute(
            "INSERT INTO letters (letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name, "
            "street, postal_code, city, country, language, registered, payload) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (letter_id) DO NOTHING",
            (r["letter_id"], r["department"], r["letter_type"], r["recipient_kind"], r["recipient_id"],
             r["recipient_name"], r["street"], r["postal_code"], r["city"], r["country"], r["language"],
             r["registered"], json.dumps(r["payload"])))
    conn.commit()


def _run(cmd: list[str], env: dict, log_path: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        return subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT).returncode


def _print_where(db_url: str, ebox, sftp) -> None:
    from include.dijlepost.db.connection import connect

    with connect(db_url) as conn:
        batches = conn.execute("SELECT batch_id, postage_class, letter_count, remote_path FROM print_batches "
                               "WHERE status = 'uploaded' ORDER BY batch_id").fetchall()
        quarantined = conn.execute("SELECT letter_id, quarantine_reason FROM letters WHERE status = 'quarantined' "
                                   "ORDER BY letter_id").fetchall()
        shadow = conn.execute("SELECT count(*) FILTER (WHERE shadow_channel = 'ebox'), count(*) FROM letters "
                              "WHERE rollout_phase = 'shadow'").fetchone()
    print(f"\nPDFs:            {Path(os.environ['DIJLEPOST_DOCUMENT_ROOT'])}/<department>/<letter_id>.pdf")
    print(f"eBox sandbox:    {len(ebox.state.publications())} publications held (state in {VAR / 'ebox-sandbox'})")
    print(f"print batches:   {len(batches)} uploaded to {sftp.root / 'inbox'} "
          f"(local copies in {os.environ['DIJLEPOST_PRINT_WORK_DIR']})")
    for batch_id, postage, count, remote in batches:
        print(f"    {batch_id}  {postage:<10} {count:>4} letters  {remote}")
    with connect(db_url) as conn:
        answers = conn.execute("SELECT coalesce(print_status, 'awaiting acknowledgement'), count(*) FROM letters "
                               "WHERE print_batch_id IS NOT NULL GROUP BY 1 ORDER BY 1").fetchall()
    print("print house:     " + (", ".join(f"{n} {what}" for what, n in answers) or "nothing handed over")
          + "  (docs/print-house.md)")
    if shadow[1]:
        print(f"shadow phase:    {shadow[0]} of {shadow[1]} letters would have gone to the eBox")
    print(f"quarantined:     {len(quarantined)}")
    for letter_id, reason in quarantined:
        print(f"    {letter_id}: {reason}")
    with connect(db_url) as conn:
        examples = conn.execute(
            "SELECT DISTINCT ON (decision_rule) letter_id FROM letters WHERE decision_rule IN "
            "('ebox_active', 'no_digital_user') ORDER BY decision_rule, letter_id").fetchall()
    from include.dijlepost import cli

    for (letter_id,) in examples:
        print(f"\n$ dijlepost letters show {letter_id}")
        cli.main(["--database-url", db_url, "letters", "show", letter_id])


if __name__ == "__main__":
    sys.exit(main())
