"""`make demo`: the three wave DAGs on embedded defaults, end to end, what happened, and the Airflow UI.

    python -m demo [--letters N] [--chunk-size N] [--ui | --no-ui] [--port PORT] [--user NAME:ROLE ...]

1. brings up an embedded PostgreSQL (or uses DIJLEPOST_DATABASE_URL), the eBox sandbox over HTTPS
   and the print house's SFTP server, all on loopback and kept under var/demo/;
2. migrates the outbox schema, imports a realistic demo set with `dijlepost letters import` (and
   shows the rows it refuses), registers who has an active eBox, sets each department's rollout phase;
3. starts Airflow (api-server, dag-processor, scheduler with LocalExecutor; its metadata on the same
   PostgreSQL) and triggers letters_finance, letters_gas and letters_economy_housing;
4. lets the print house answer, reads its answers, runs the day's rollout evaluation;
5. prints letters per department, status, channel and rule, and where the PDFs and batches are;
6. in a terminal (or with --ui): keeps the Airflow UI up on 127.0.0.1 with the demo's runs, their task
   logs and Admin -> Rollout, prints the address and one login per user (a data engineer, an
   administrator, an auditor, and those of --user), and stops everything on Ctrl-C. Without a
   terminal (CI) it stops everything and exits.
Rerunning is safe: the import reports duplicates, nothing is sent twice, new runs find no work.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import sys
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from demo.dataset import DEFAULT_MIX
from include.dijlepost.settings import PROJECT_ROOT

VAR = Path(os.environ.get("DIJLEPOST_DEMO_DIR", PROJECT_ROOT / "var" / "demo"))
WAVE_DAGS = ["letters_finance", "letters_gas", "letters_economy_housing"]
UI_USER = "admin"
# One login per user of the UI, with the SimpleAuthManager role that user has in production
# (docs/rollout-admin.md, "Logins and roles"): {name: (role, what they do)}.
DEMO_LOGINS = {
    "engineer": ("op", "data engineer: runs the waves, reads their logs, pools and connections"),
    UI_USER: ("admin", "administrator: changes rollout phases and paper exemptions"),
    "auditor": ("viewer", "auditor: reads runs, task logs and the Rollout page, changes nothing"),
}
UI_PORT = 8080
ALERT_TO = "ict-dijlepost@mechelen.example"
BRUSSELS = ZoneInfo("Europe/Brussels")
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


def _ui_passwords(names) -> dict[str, str]:
    """The UI logins' passwords, kept in var/demo so that a rerun keeps the same logins."""
    path = VAR / "airflow-passwords.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    wanted = {name: known.get(name) or secrets.token_urlsafe(12) for name in names}
    if wanted != known:
        path.write_text(json.dumps({**known, **wanted}, indent=1))
        path.chmod(0o600)
    return wanted


def _login(text: str) -> tuple[str, str]:
    from sandboxes.airflow_cluster import parse_logins

    try:
        ((name, role),) = parse_logins(text).items()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, role


def _port(wanted: int | None) -> int:
    """The given port, else 8080 when it is free on 127.0.0.1, else a free one."""
    if wanted:
        return wanted
    for port in (UI_PORT, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--letters",
        type=int,
        default=None,
        help=f"letters to seed over the three departments (default {sum(DEFAULT_MIX.values())})",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=100, help="letters per chunk of a wave run (default 100)"
    )
    ui = parser.add_mutually_exclusive_group()
    ui.add_argument(
        "--ui",
        dest="ui",
        action="store_true",
        default=None,
        help="keep the Airflow UI up at the end until Ctrl-C (default: when run in a terminal)",
    )
    ui.add_argument("--no-ui", dest="ui", action="store_false", help="stop everything at the end")
    parser.add_argument(
        "--port", type=int, default=None, help=f"the UI's port (default {UI_PORT}, or a free one)"
    )
    parser.add_argument(
        "--user",
        dest="users",
        type=_login,
        action="append",
        default=[],
        metavar="NAME:ROLE",
        help="one more UI login, ROLE one of viewer, user, op, admin (repeatable; "
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=name:role,... adds them too)",
    )
    args = parser.parse_args(argv)
    if args.ui is None:
        args.ui = sys.stdin.isatty() and sys.stdout.isatty()
    return args


def scaled_mix(letters: int | None) -> dict[str, int]:
    """DEFAULT_MIX scaled to `letters` in all (every department keeps at least one letter)."""
    if not letters:
        return dict(DEFAULT_MIX)
    total = sum(DEFAULT_MIX.values())
    return {d: max(1, round(letters * n / total)) for d, n in DEFAULT_MIX.items()}


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    # Ctrl-C, and SIGTERM (a service manager, `kill`), stop everything the demo started, in order; also
    # when it was started in the background, where a shell leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # The in-process SFTP sandbox logs every connection at INFO; the demo shows what dijlepost did.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    VAR.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DIJLEPOST_PSEUDONYM_KEY", _pseudonym_key())
    os.environ.setdefault("DIJLEPOST_DOCUMENT_ROOT", str(VAR / "documents"))
    os.environ.setdefault("DIJLEPOST_PRINT_WORK_DIR", str(VAR / "print-batches"))

    from demo import dataset
    from demo.services import airflow_env, department_login_url, start_database, with_pipeline_login
    from include.dijlepost import cli
    from include.dijlepost.db.connection import connect
    from include.dijlepost.recipients import pseudonym
    from include.dijlepost.rollout import add_exemption, set_phase
    from include.dijlepost.settings import Settings
    from sandboxes.airflow_cluster import AirflowCluster, parse_logins
    from sandboxes.ebox import SandboxServer
    from sandboxes.mail import MailSink
    from sandboxes.printhouse.server import PrintHouseSftpServer

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
        mail = MailSink(VAR / "mail").start()  # the alerts' mail server
        stack.callback(mail.stop)
        print(
            f"    database: {'embedded PostgreSQL in ' + str(VAR / 'pgdata') if db.embedded else db.dijlepost_url}"
        )
        print(f"    eBox sandbox: {ebox.base_url}   print house: sftp://{sftp.host}:{sftp.port}")

        say("migrating the outbox schema")
        cli.main(["--database-url", db.dijlepost_url, "db", "migrate"])
        db = with_pipeline_login(db)  # the import, the waves and the print house's answers use it
        print(
            "    pipeline login: dijlepost_demo_pipeline (dijlepost_pipeline only: no superuser, no BYPASSRLS)"
        )

        say("seeding the demo letters")
        data = dataset.build(mix=scaled_mix(args.letters))
        import_file = _write_jsonl(VAR / "outbox-import.jsonl", data.letters)
        cli.main(["--database-url", db.pipeline_url, "letters", "import", str(import_file)])
        say("a file with bad rows, to show what `letters import` refuses")
        cli.main(
            [
                "--database-url",
                db.pipeline_url,
                "letters",
                "import",
                str(_write_jsonl(VAR / "bad-rows.jsonl", data.refused_rows)),
            ]
        )
        for department in sorted({r["department"] for r in data.direct_rows}):
            with connect(department_login_url(db, department)) as system:
                _insert_direct_rows(system, [r for r in data.direct_rows if r["department"] == department])
        with connect(db.dijlepost_url) as conn:
            for (kind, rid), exclusive in data.ebox_active.items():
                ebox.state.register_recipient(
                    kind,
                    rid,
                    active=True,
                    exclusively_ebox=exclusive,
                    no_digital_user=(kind, rid) in data.no_digital_user,
                )
            key = settings.pseudonym_key
            conn.commit()
            # through the rollout code, as the page and `rollout exempt add` do: kept in the history
            for kind, rid in data.paper_exempt:
                add_exemption(
                    conn, pseudonym(key, kind, rid), "no internet at home: keeps paper", "digipunt Mechelen"
                )
            pilot = sorted(pseudonym(key, k, r) for k, r in data.pilot)
            for department, (phase, reason) in DEMO_PHASES.items():
                set_phase(
                    conn, department, phase, reason, "demo administrator", pilot if phase == "pilot" else None
                )
        cli.main(["--database-url", db.dijlepost_url, "rollout", "show"])

        env = {
            **airflow_env(PROJECT_ROOT, db, ebox.airflow_connection(), sftp.airflow_connection()),
            **{k: v for k, v in os.environ.items() if k.startswith("DIJLEPOST_")},
            "DIJLEPOST_REPORTS_DIR": str(VAR / "reports"),
            "AIRFLOW_CONN_DIJLEPOST_ALERTS": json.dumps(mail.airflow_connection()),
            "DIJLEPOST_ALERT_EMAILS": os.environ.get("DIJLEPOST_ALERT_EMAILS", ALERT_TO),
        }
        logins = {
            **parse_logins(os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "")),
            **{name: role for name, (role, _) in DEMO_LOGINS.items()},
            **dict(args.users),
        }
        passwords = _ui_passwords(logins)
        cluster = AirflowCluster(
            VAR,
            env,
            executor="LocalExecutor",
            parallelism=(os.cpu_count() or 2) + 2,
            metadata_url=db.airflow_url,
            port=_port(args.port),
            user=UI_USER,
            password=passwords[UI_USER],
            users=logins,
            passwords=passwords,
        )
        say(f"starting Airflow: api-server, dag-processor and scheduler (their logs in {VAR / 'logs'})")
        stack.callback(cluster.stop)
        cluster.start()
        cluster.wait_for_dags([*WAVE_DAGS, "letters_evaluation"])
        say(f"running {', '.join(WAVE_DAGS)} (task logs in {cluster.env()['AIRFLOW_HOME']}/logs)")
        # Small chunks, so that the demo shows the fan-out of rendering and delivery per chunk.
        runs = [(dag_id, cluster.trigger(dag_id, {"chunk_size": args.chunk_size})) for dag_id in WAVE_DAGS]
        _watch(cluster, db.dijlepost_url, runs)
        if not _report_runs(cluster, runs):
            return 1
        say("the print house answers: batches checked, 1 letter in 25 rejected, 1 in 20 returned by the post")
        from sandboxes.printhouse.simulator import PrinterBehaviour, process_inbox

        answered = process_inbox(sftp.root, PrinterBehaviour(reject_every=25, return_every=20))
        print(f"    {len(answered['batches'])} batch(es) acknowledged in {sftp.root / 'outbox'}")
        # The print_house_acknowledgements DAG (every 15 minutes in production) reads the answers over
        # SFTP (pinned host key) and moves the letters on: triggered here, so that each letter's
        # printed_and_posted event links to the task log of a real run.
        acks = [("print_house_acknowledgements", cluster.trigger("print_house_acknowledgements"))]
        if not _report_runs(cluster, acks):
            return 1
        (read,) = cluster.xcom_returns(*acks[0], "collect_print_house_files")
        print(
            f"    read {read['files']} file(s) from the print house: {read.get('accepted', 0)} letters "
            f"printed and posted, {read.get('rejected', 0)} rejected by the print house, "
            f"{read.get('returned', 0)} later returned by the post"
        )

        say("what happened")
        cli.main(["--database-url", db.dijlepost_url, "letters", "status"])
        _print_where(db.dijlepost_url, ebox, sftp)

        say("the audit trail and today's rollout evaluation (docs/audit.md, docs/evaluation.md)")
        print("$ dijlepost audit verify")
        cli.main(["--database-url", db.dijlepost_url, "audit", "verify"])
        today = datetime.now(BRUSSELS).date().isoformat()
        evaluation = [("letters_evaluation", cluster.trigger("letters_evaluation", {"day": today}))]
        ok = _report_runs(cluster, evaluation)
        print(f"    report: {VAR / 'reports' / 'day' / today / 'report.html'}")
        if not ok:
            return 1
        _forced_failure(cluster, sftp, mail)
        print(f"\ndemo finished in {time.monotonic() - started:.0f}s")
        if args.ui:
            _serve_ui(cluster, db.dijlepost_url)
            return 0
        print(
            "(in a terminal the demo ends with the Airflow UI up on 127.0.0.1 until Ctrl-C; "
            "`python -m demo --ui` asks for it)"
        )
    return 0


def _watch(
    cluster, db_url: str, runs: list[tuple[str, str]], every: float = 3.0, timeout: float = 1800
) -> None:
    """While the wave runs work: a line per run whenever its progress in the outbox changes."""
    from include.dijlepost.db.connection import connect
    from include.dijlepost.progress import describe, run_progress

    shown: dict = {}
    deadline = time.monotonic() + timeout
    with connect(db_url) as conn:
        while time.monotonic() < deadline:
            states = {run: cluster.run_state(*run) for run in runs}
            for dag_id, run_id in runs:
                line = describe(run_progress(conn, f"{dag_id}:{run_id}"))
                if shown.get(dag_id) != line:
                    shown[dag_id] = line
                    now = datetime.now(BRUSSELS).strftime("%H:%M:%S")
                    print(f"    {now}  {dag_id}: {line}", flush=True)
            if all(state in ("success", "failed") for state in states.values()):
                return
            cluster.check_alive()
            time.sleep(every)


def _forced_failure(cluster, sftp, mail) -> None:
    """A failure on purpose, and the alert it sends: the print house drops a file that cannot be read,
    the acknowledgements run refuses it (kept aside in refused/) and fails, and its failure callback
    e-mails the alert through the SMTP Connection `dijlepost_alerts` to the demo's mail server."""
    from sandboxes.mail import as_text

    say("a forced failure and its alert: the print house drops a file that cannot be read")
    (sftp.root / "outbox" / "returned-demo-unreadable.csv").write_text("letter,why\nFIN-0,moved\n")
    run = ("print_house_acknowledgements", cluster.trigger("print_house_acknowledgements"))
    state = cluster.wait([run], timeout=600)[run]
    print(f"    print_house_acknowledgements: {state} (the file is refused and kept in refused/)")
    try:
        message = mail.wait_for(1, timeout=120)[-1]
    except TimeoutError:
        print("    no alert e-mail arrived; see the task log", file=sys.stderr)
        return
    print(f"    the alert e-mail, as the demo's mail server received it ({mail.directory}):")
    for line in as_text(message).splitlines():
        print(f"      {line}")


def _report_runs(cluster, runs: list[tuple[str, str]]) -> bool:
    """Wait for the runs; print each one's state and duration; False when one did not succeed."""
    states = cluster.wait(runs, timeout=1800)
    ok = True
    for dag_id, run_id in runs:
        (seconds,) = cluster.query(
            "SELECT extract(epoch FROM end_date - start_date) FROM dag_run WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id),
        )[0]
        state = states[(dag_id, run_id)]
        print(f"    {dag_id}: {state} in {float(seconds or 0):.0f}s")
        if state != "success":
            ok = False
            failed = [t["task_id"] for t in cluster.task_instances(dag_id, run_id) if t["state"] == "failed"]
            print(
                f"    failed tasks: {', '.join(failed) or '-'}; their logs are in "
                f"{cluster.env()['AIRFLOW_HOME']}/logs/dag_id={dag_id}/run_id={run_id}/",
                file=sys.stderr,
            )
    return ok


def _serve_ui(cluster, database_url: str) -> None:
    """Keep Airflow up until Ctrl-C (or SIGTERM); the caller's ExitStack then stops everything."""
    say(f"the Airflow UI: {cluster.base_url}/   one login per user:")
    for name, (role, password) in cluster.logins.items():
        what = DEMO_LOGINS.get(name, (role, "added with --user or AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"))[
            1
        ]
        print(f"    login: {name} / {password}   (role {role}; {what})")
    print(
        "    DAGs: the three waves with this demo's runs; a run's Grid shows each chunk's tasks and their logs"
    )
    print("    Admin -> Rollout: each department's phase, the pilot and the shadow report")
    print(
        "    times: the UI shows the browser's time zone (Europe/Brussels in the city; the clock icon "
        "at the top right changes it), the CLI and the task logs' events Europe/Brussels"
    )
    print(
        "    schedules: this demo's scheduler runs only the runs the demo triggers, so each DAG's "
        "'Next Run' passes without a run; the Trigger button runs a DAG now"
    )
    print("    the CLI on this demo's database and UI (in another terminal):")
    print(f"    {cli_exports(database_url, cluster.base_url)}")
    print("    Ctrl-C stops Airflow, the sandboxes and PostgreSQL", flush=True)
    try:
        while True:
            cluster.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\n==> stopping Airflow, the sandboxes and PostgreSQL", flush=True)


def cli_exports(database_url: str, airflow_url: str) -> str:
    """The shell line that points `dijlepost` at the demo: its database, the Airflow UI that `audit
    trace` links to, and the pseudonym key the demo keeps in var/demo."""
    key = VAR / "pseudonym.key"
    own_key = os.environ.get("DIJLEPOST_PSEUDONYM_KEY") == key.read_text().strip()  # else the caller's
    return (
        f"export DIJLEPOST_DATABASE_URL={shlex.quote(database_url)} "
        f"AIRFLOW__API__BASE_URL={shlex.quote(airflow_url)}"
        + (f' DIJLEPOST_PSEUDONYM_KEY="$(cat {shlex.quote(str(key))})"' if own_key else "")
    )


def _insert_direct_rows(conn, rows: list[dict]) -> None:
    """What a department system does when it writes into the outbox table itself, with its own login
    (its department's letters only): no validation."""
    for r in rows:
        conn.execute(
            "INSERT INTO letters (letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name, "
            "street, postal_code, city, country, language, registered, payload) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (letter_id) DO NOTHING",
            (
                r["letter_id"],
                r["department"],
                r["letter_type"],
                r["recipient_kind"],
                r["recipient_id"],
                r["recipient_name"],
                r["street"],
                r["postal_code"],
                r["city"],
                r["country"],
                r["language"],
                r["registered"],
                json.dumps(r["payload"]),
            ),
        )
    conn.commit()


def _print_where(db_url: str, ebox, sftp) -> None:
    from include.dijlepost.db.connection import connect

    with connect(db_url) as conn:
        batches = conn.execute(
            "SELECT batch_id, postage_class, letter_count, remote_path FROM print_batches "
            "WHERE status = 'uploaded' ORDER BY batch_id"
        ).fetchall()
        quarantined = conn.execute(
            "SELECT letter_id, quarantine_reason FROM letters WHERE status = 'quarantined' ORDER BY letter_id"
        ).fetchall()
        shadow = conn.execute(
            "SELECT count(*) FILTER (WHERE shadow_channel = 'ebox'), count(*) FROM letters "
            "WHERE rollout_phase = 'shadow'"
        ).fetchone()
    print(f"\nPDFs:            {Path(os.environ['DIJLEPOST_DOCUMENT_ROOT'])}/<department>/<letter_id>.pdf")
    print(
        f"eBox sandbox:    {len(ebox.state.publications())} publications held (state in {VAR / 'ebox-sandbox'})"
    )
    print(
        f"print batches:   {len(batches)} uploaded to {sftp.root / 'inbox'} "
        f"(local copies in {os.environ['DIJLEPOST_PRINT_WORK_DIR']})"
    )
    for batch_id, postage, count, remote in batches:
        print(f"    {batch_id}  {postage:<10} {count:>4} letters  {remote}")
    with connect(db_url) as conn:
        answers = conn.execute(
            "SELECT coalesce(print_status, 'awaiting'), count(*) FROM letters "
            "WHERE print_batch_id IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
    # one word per letter's last answer: a returned letter was posted first, but counts as returned
    words = {
        "posted": "posted (not returned)",
        "returned": "posted, then returned by the post",
        "rejected": "rejected by the print house (quarantined)",
        "awaiting": "awaiting the print house's answer",
    }
    print(
        "print house:     "
        + (", ".join(f"{n} {words.get(what, what)}" for what, n in answers) or "nothing handed over")
        + "  (docs/print-house.md)"
    )
    if shadow[1]:
        print(f"shadow phase:    {shadow[0]} of {shadow[1]} letters would have gone to the eBox")
    print(f"quarantined:     {len(quarantined)}")
    for letter_id, reason in quarantined:
        print(f"    {letter_id}: {reason}")
    with connect(db_url) as conn:
        examples = conn.execute(
            "SELECT DISTINCT ON (decision_rule) letter_id FROM letters WHERE decision_rule IN "
            "('ebox_active', 'no_digital_user') ORDER BY decision_rule, letter_id"
        ).fetchall()
    from include.dijlepost import cli

    for (letter_id,) in examples:
        print(f"\n$ dijlepost letters show {letter_id}")
        cli.main(["--database-url", db_url, "letters", "show", letter_id])


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
