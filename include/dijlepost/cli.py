"""`dijlepost`: the command line for data engineers and administrators.

    dijlepost db migrate
    dijlepost letters import FILE            (CSV or JSON Lines)
    dijlepost letters status [--department D]
    dijlepost letters show LETTER_ID          (a letter's state and history, no personal data)
    dijlepost rollout show
    dijlepost rollout set DEPARTMENT PHASE --reason TEXT [--by NAME] [--pilot-file FILE] [--pilot-percent N]
    dijlepost rollout history [--department D] [--limit N]
    dijlepost rollout shadow-report DEPARTMENT [--days N]
    dijlepost rollout exempt add|remove citizen|enterprise ID --reason TEXT [--by NAME]
    dijlepost rollout exemptions [--history]
    dijlepost audit trace LETTER_ID          (a letter's whole life, with the task log of each step)
    dijlepost audit export --from DATE --to DATE --output FILE   (events of a period, CSV)
    dijlepost audit verify [--anchor SEQ:HASH]                   (hash chain and privacy check)
The database is `DIJLEPOST_DATABASE_URL` (or `--database-url`).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_REFUSED, EXIT_CONFIG = 0, 1, 2
EXIT_NOT_RUN = EXIT_CONFIG  # letters import: the file could not be imported at all
SAME_DUPLICATES_SHOWN = 10


def _n(count: int, thing: str, things: str | None = None) -> str:
    """`1 letter`, `2 letters`."""
    return f"{count} {thing if count == 1 else things or thing + 's'}"


def _conn(args):
    """The database connection, its session in Europe/Brussels: every time printed is the city's."""
    from include.dijlepost.db.connection import connect

    conn = connect(args.database_url or os.environ.get("DIJLEPOST_DATABASE_URL"))
    conn.execute("SET TIME ZONE 'Europe/Brussels'")
    conn.commit()
    return conn


def _key() -> bytes:
    from include.dijlepost.settings import Settings

    return Settings.from_env().pseudonym_key


def cmd_migrate(args) -> int:
    from include.dijlepost.db.migrate import migrate

    with _conn(args) as conn:
        applied = migrate(conn)
    print(f"migrations applied: {', '.join(applied) if applied else 'none (schema up to date)'}")
    return EXIT_OK


def cmd_import(args) -> int:
    """Exit 0: every letter is in the outbox (imported now or an identical duplicate); 1: some rows were
    refused (or are duplicates with different content), the good ones were imported; 2: the import could
    not run (no such file, a file that cannot be read as a whole, no database): nothing was imported."""
    from contextlib import closing

    import psycopg

    from include.dijlepost.db.connection import describe_db_error
    from include.dijlepost.db.logins import refuse_privileged_login
    from include.dijlepost.intake import FileRefused, ImportFailed, import_rows, read_rows
    from include.dijlepost.rendering.errors import TemplateError

    path = Path(args.file)
    if not path.is_file():
        print(f"error: {path} does not exist; nothing imported", file=sys.stderr)
        return EXIT_NOT_RUN
    try:
        with closing(_conn(args)) as conn:
            try:
                refuse_privileged_login(conn, "DIJLEPOST_DATABASE_URL (or --database-url)")
                report = import_rows(conn, _with_progress(read_rows(path), path))
            except (FileRefused, ImportFailed) as exc:
                conn.rollback()
                before = len(exc.report.inserted) if exc.report else 0
                done = (
                    f"the {before} letters before it were imported (an import of the corrected file reports "
                    "them as duplicates)"
                    if before
                    else "nothing imported"
                )
                print(f"error: {path.name}: {exc}; {done}", file=sys.stderr)
                return EXIT_NOT_RUN
    except TemplateError as exc:  # the renderer checks every row: without templates, none
        print(f"error: the letter templates cannot be loaded ({exc}); nothing imported", file=sys.stderr)
        return EXIT_NOT_RUN
    except psycopg.OperationalError as exc:  # the server's message names host and port, no data
        print(
            f"error: cannot reach the database: {str(exc).strip().splitlines()[0]}; nothing imported",
            file=sys.stderr,
        )
        return EXIT_NOT_RUN
    except psycopg.Error as exc:
        print(f"error: {path.name}: {describe_db_error(exc)}; nothing imported", file=sys.stderr)
        return EXIT_NOT_RUN
    except OSError as exc:
        print(f"error: {path.name}: cannot read the file ({exc.strerror}); nothing imported", file=sys.stderr)
        return EXIT_NOT_RUN
    for line, message in report.errors:
        print(f"{path.name}:{line}: refused: {message}", file=sys.stderr)
    shown = 0
    for line, letter_id, same in report.duplicates:
        if same and shown >= SAME_DUPLICATES_SHOWN:
            continue  # a re-sent file: a few lines say it, the count says how much
        shown += same
        what = (
            "already in the outbox, not inserted again"
            if same
            else "already in the outbox WITH DIFFERENT CONTENT: refused, correct it in the source system"
        )
        print(f"{path.name}:{line}: duplicate {letter_id}: {what}", file=sys.stderr)
    hidden = sum(1 for _, _, same in report.duplicates if same) - shown
    if hidden > 0:
        print(
            f"{path.name}: ... and {hidden} more identical {'duplicate' if hidden == 1 else 'duplicates'}, "
            "not inserted again",
            file=sys.stderr,
        )
    print(
        f"imported {_n(len(report.inserted), 'letter')}, {_n(len(report.duplicates), 'duplicate')}, "
        f"{len(report.errors)} refused"
    )
    return EXIT_OK if report.ok else EXIT_REFUSED


def _with_progress(rows, path: Path, stream=None):
    """The rows, with a progress bar (rich) on a terminal: lines checked of the file's lines, then the
    insert. In a pipe or a log file the rows pass unchanged and nothing extra is printed."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield from rows
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with path.open("rb") as fp:
        lines = sum(1 for _ in fp)
    with Progress(
        TextColumn("checking {task.fields[name]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
        transient=True,
    ) as bar:
        task = bar.add_task("import", total=lines, name=path.name)
        for line, row in rows:
            bar.update(task, completed=line)
            yield line, row
    print(f"{path.name}: checked; inserting ...", file=stream, flush=True)


def cmd_status(args) -> int:
    from include.dijlepost.states import PrintStatus, Status

    # A quarantined letter shows why (the rule that quarantined it, or the stage that did: the print
    # house's rejection, the eBox's refusal, rendering), not the routing rule it had before.
    sql = (
        "SELECT department, status, coalesce(channel, '-'), "
        f"CASE WHEN status <> {Status.QUARANTINED.sql} THEN coalesce(decision_rule, '-') "
        f"WHEN print_status = {PrintStatus.REJECTED.sql} THEN 'rejected_by_print_house' "
        "WHEN decision_rule IN ('invalid_recipient_id', 'incomplete_address') THEN decision_rule "
        "ELSE coalesce((SELECT 'at ' || (e.details->>'stage') FROM letter_events e "
        # the event that quarantined a letter carries the state's name
        f"WHERE e.letter_id = letters.letter_id AND e.event = {Status.QUARANTINED.sql} "
        "ORDER BY e.event_id DESC LIMIT 1), "
        "'-') END, count(*) "
        "FROM letters {} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )
    with _conn(args) as conn:
        rows = conn.execute(
            sql.format("WHERE department = %s" if args.department else ""),
            (args.department,) if args.department else (),
        ).fetchall()
    print(f"{'department':<16} {'status':<16} {'channel':<8} {'rule':<28} {'letters':>7}")
    for row in rows:
        print(f"{row[0]:<16} {row[1]:<16} {row[2]:<8} {row[3]:<28} {row[4]:>7}")
    return EXIT_OK


def cmd_show(args) -> int:
    with _conn(args) as conn:
        row = conn.execute(
            "SELECT letter_id, department, letter_type, status, channel, decision_rule, decision_reason, "
            "rollout_phase, pdf_sha256, ebox_message_id, ebox_expires_at, print_batch_id, quarantine_reason "
            "FROM letters "
            "WHERE letter_id = %s",
            (args.letter_id,),
        ).fetchone()
        if row is None:
            print(f"no letter {args.letter_id!r}", file=sys.stderr)
            return EXIT_REFUSED
        names = (
            "letter_id",
            "department",
            "letter_type",
            "status",
            "channel",
            "rule",
            "reason",
            "phase",
            "pdf_sha256",
            "ebox_message_id",
            "ebox_expires_at",
            "print_batch_id",
            "quarantine_reason",
        )
        for name, value in zip(names, row):
            if value is not None:
                print(f"{name:>18}: {value}")
        for at, event, details, dag_id, run_id, task_id, map_index, try_number in conn.execute(
            "SELECT at, event, details, dag_id, run_id, task_id, map_index, try_number FROM letter_events "
            "WHERE letter_id = %s ORDER BY event_id",
            (args.letter_id,),
        ):
            where = (
                f"{dag_id}/{run_id}/{task_id}[{map_index}] try {try_number}" if dag_id else (task_id or "")
            )
            print(
                f"{at:%Y-%m-%d %H:%M:%S %Z}  {event:<24} {json.dumps(details, ensure_ascii=False)}  {where}"
            )
    return EXIT_OK


def cmd_rollout_show(args) -> int:
    from include.dijlepost.rollout import show

    with _conn(args) as conn:
        for r in show(conn):
            print(
                f"{r['department']:<16} {r['phase']:<7} pilot={r['pilot_size']:<5} "
                f"pilot%={r['pilot_percent']:<3} "
                f"{r['changed_at']:%Y-%m-%d %H:%M %Z} by {r['changed_by']}: {r['reason']}"
            )
    return EXIT_OK


def cmd_rollout_history(args) -> int:
    from include.dijlepost.rollout import RolloutChangeRefused, history

    try:
        with _conn(args) as conn:
            rows = history(conn, args.department, limit=args.limit)
    except RolloutChangeRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    for h in rows:
        pilot = f" pilot={h['pilot_size']}+{h['pilot_percent']}%" if h["pilot_percent"] is not None else ""
        print(
            f"{h['changed_at']:%Y-%m-%d %H:%M %Z}  {h['department']:<16} {h['from_phase'] or '-':>6} -> "
            f"{h['to_phase']:<7} by {h['changed_by']}{pilot}: {h['reason']}"
        )
    return EXIT_OK


def cmd_rollout_shadow_report(args) -> int:
    from include.dijlepost.admin.figures import shadow_report
    from include.dijlepost.rollout import RolloutChangeRefused, read_state
    from include.dijlepost.tariffs import TariffError, Tariffs

    try:
        tariffs = Tariffs.from_env()
        with _conn(args) as conn:
            r = shadow_report(conn, args.department, tariffs, args.days)
            phase = read_state(conn, args.department).phase
    except (RolloutChangeRefused, TariffError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    share = "-" if r.digital_share is None else f"{r.digital_share * 100:.1f} %"
    period = f"the last {args.days} days" if args.days else "all time"
    print(f"shadow report for {args.department} (phase now: {phase}; letters decided in shadow, {period})")
    print(f"  letters decided             {r.decided:>10}")
    print(f"  would have gone to eBox     {r.would_be_ebox:>10}   ({share} of the sendable letters)")
    print(f"  on paper anyway             {r.would_be_paper:>10}")
    print(f"  quarantined                 {r.quarantined:>10}")
    print(f"  postage saved          EUR {r.postage_saving:>10.2f}")
    print(f"  printing saved         EUR {r.printing_saving:>10.2f}")
    print(f"  total saved            EUR {r.total_saving:>10.2f}")
    t = r.tariffs
    print(
        f"tariffs: postage EUR {t.postage} (+{t.registered_surcharge} registered), printing EUR "
        f"{t.print_per_letter} per letter + {t.print_per_extra_page} per extra page + {t.print_per_extra_sheet} "
        f"per extra sheet (duplex); source: {t.source}"
    )
    if r.pages_estimated:
        print(f"note: {r.pages_estimated} letters not rendered yet are counted as one page")
    if phase != "shadow" and not r.decided:
        print(f"note: {args.department} has no letters decided in phase shadow")
    return EXIT_OK


def cmd_exemptions(args) -> int:
    from include.dijlepost.rollout import exemption_history, exemptions

    with _conn(args) as conn:
        if args.history:
            for h in exemption_history(conn, limit=args.limit):
                print(
                    f"{h['changed_at']:%Y-%m-%d %H:%M %Z}  {h['action']:<6} {h['recipient_pseudonym']} "
                    f"by {h['changed_by']}: {h['reason']}"
                )
        else:
            for e in exemptions(conn, limit=args.limit):
                print(
                    f"{e['recipient_pseudonym']}  since {e['added_at']:%Y-%m-%d} by {e['added_by']}: {e['reason']}"
                )
    return EXIT_OK


def cmd_rollout_set(args) -> int:
    from include.dijlepost.recipients import InvalidRecipientId, normalize_recipient_id, pseudonym
    from include.dijlepost.rollout import RolloutChangeRefused, set_phase

    allowlist = None
    if args.pilot_file:
        if not Path(args.pilot_file).is_file():
            print(f"error: {args.pilot_file} does not exist", file=sys.stderr)
            return EXIT_REFUSED
        allowlist, key = [], _key()
        for n, line in enumerate(Path(args.pilot_file).read_text().splitlines(), start=1):
            if not line.strip():
                continue
            kind, _, value = line.strip().partition(",")
            try:
                allowlist.append(pseudonym(key, kind, normalize_recipient_id(kind, value)))
            except InvalidRecipientId as exc:
                print(f"{args.pilot_file}:{n}: refused: {exc}", file=sys.stderr)
                return EXIT_REFUSED
    try:
        with _conn(args) as conn:
            before, after = set_phase(
                conn,
                args.department,
                args.phase,
                args.reason,
                args.by,
                allowlist,
                args.pilot_percent,
                refuse_unchanged=True,
            )
    except RolloutChangeRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"{args.department}: {before} -> {after} (takes effect at the next run)")
    return EXIT_OK


def cmd_exempt(args) -> int:
    from include.dijlepost.recipients import InvalidRecipientId, normalize_recipient_id, pseudonym
    from include.dijlepost.rollout import RolloutChangeRefused, add_exemption, remove_exemption

    try:
        p = pseudonym(_key(), args.kind, normalize_recipient_id(args.kind, args.recipient_id))
    except InvalidRecipientId as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        with _conn(args) as conn:
            changed = (
                add_exemption(conn, p, args.reason, args.by)
                if args.action == "add"
                else remove_exemption(conn, p, args.reason, args.by)
            )
    except RolloutChangeRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"{args.action} paper exemption for {p}: {'done' if changed else 'nothing to change'}")
    return EXIT_OK


def _whole_number(text: str) -> int:
    """A count of at least 1 in the digits 0-9 (`int()` would also read full-width and other digits)."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a whole number of at least 1 in digits 0-9")
    return int(text)


def _airflow_url(args) -> str:
    """The Airflow UI the links open: --airflow-url, else DIJLEPOST_AIRFLOW_URL, else Airflow's own
    `[api] base_url` (AIRFLOW__API__BASE_URL, or airflow.cfg), else http://localhost:8080."""
    from include.dijlepost.audit import DEFAULT_AIRFLOW_URL

    return (
        args.airflow_url
        or os.environ.get("DIJLEPOST_AIRFLOW_URL")
        or airflow_base_url()
        or DEFAULT_AIRFLOW_URL
    )


def airflow_base_url(environ=os.environ) -> str | None:
    """Airflow's `[api] base_url` as Airflow reads it: the environment variable, else the `[api]`
    section of airflow.cfg ($AIRFLOW_CONFIG, else $AIRFLOW_HOME/airflow.cfg, else ~/airflow/airflow.cfg).
    Read without importing Airflow, which would take seconds and may write a default airflow.cfg."""
    import configparser

    if environ.get("AIRFLOW__API__BASE_URL"):
        return environ["AIRFLOW__API__BASE_URL"]
    home = Path(environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    path = Path(environ.get("AIRFLOW_CONFIG") or home / "airflow.cfg")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return None
    return parser.get("api", "base_url", fallback=None) or None


def cmd_audit_trace(args) -> int:
    from include.dijlepost.audit import format_trace, trace

    with _conn(args) as conn:
        events = trace(conn, args.letter_id, _airflow_url(args))
    if not events:
        print(f"no events for letter {args.letter_id!r}", file=sys.stderr)
        return EXIT_REFUSED
    for text in format_trace(events):
        print(text)
    return EXIT_OK


def cmd_audit_export(args) -> int:
    import hashlib
    from datetime import date

    from include.dijlepost.audit import chain_head, export_csv

    try:
        start, end = date.fromisoformat(args.date_from), date.fromisoformat(args.date_to)
        if end < start:
            raise ValueError(f"--to {end} is before --from {start}")
    except ValueError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    out = Path(args.output)
    tmp = out.with_name(out.name + ".part")
    with _conn(args) as conn:
        with tmp.open("w", encoding="utf-8", newline="") as fp:
            rows = export_csv(conn, start, end, fp, _airflow_url(args))
        head = chain_head(conn)
    tmp.replace(out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"exported {rows} events of {start}..{end} (Europe/Brussels) to {out}")
    print(f"sha256 {digest}  chain head #{head[0]} {head[1]}")
    return EXIT_OK


def cmd_audit_verify(args) -> int:
    from include.dijlepost.audit import parse_anchor, privacy_findings, verify

    try:
        anchors = dict(parse_anchor(a) for a in args.anchor)
    except ValueError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    with _conn(args) as conn:
        result = verify(conn, anchors)
        findings = privacy_findings(conn) if result.broken_at is None else []
    if result.broken_at is not None:
        print(f"BROKEN at event #{result.broken_at}: {result.problem}")
        print(f"{result.checked} events before it are intact")
    else:
        print(f"chain intact: {result.checked} events; head #{result.head_seq} {result.head_hash}")
    for problem in result.anchor_problems:
        print(f"ANCHOR MISMATCH: {problem}")
    for f in findings:
        print(
            f"PERSONAL DATA: event #{f['chain_seq']} ({f['event']} of {f['letter_id']}) holds a {f['holds']}"
        )
    if result.broken_at is None and not findings:
        print(
            f"privacy: none of the {result.checked} events holds a recipient's id, name or street, "
            "or a national register number"
        )
    return EXIT_OK if result.ok and not findings else EXIT_REFUSED


AIRFLOW_URL_HELP = (
    "the Airflow UI the task log links open (default: $DIJLEPOST_AIRFLOW_URL, else Airflow's "
    "[api] base_url, else http://localhost:8080)"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dijlepost",
        description=__doc__.splitlines()[0] + " Times are Europe/Brussels.",
        epilog="`dijlepost COMMAND --help` tells more about each command.",
    )
    p.add_argument("--database-url", help="PostgreSQL URL (default: $DIJLEPOST_DATABASE_URL)")
    sub = p.add_subparsers(dest="area", required=True, metavar="COMMAND", help="what to work on")
    db = _area(sub, "db", "the outbox database's schema")
    db.add_parser("migrate", help="create or upgrade the schema (idempotent)").set_defaults(func=cmd_migrate)
    _add_letters_commands(_area(sub, "letters", "import letters into the outbox, and see where they are"))
    _add_rollout_commands(
        _area(sub, "rollout", "rollout phases per department, the pilot group and paper exemptions")
    )
    _add_audit_commands(
        _area(sub, "audit", "a letter's whole life, the events of a period, the hash chain's proof")
    )
    _describe(p)
    return p


def _area(sub, name: str, what: str):
    """A command (`dijlepost NAME`) whose actions are added to the returned subparsers."""
    return sub.add_parser(name, help=what, description=what).add_subparsers(
        dest="cmd", required=True, metavar="ACTION", help="what to do"
    )


def _add_letters_commands(letters) -> None:
    from include.dijlepost.waves import DEPARTMENTS

    imp = letters.add_parser(
        "import",
        help="validate and insert letters from CSV or JSON Lines "
        "(exit 0: all in; 1: some rows refused; 2: nothing imported)",
    )
    imp.add_argument("file", help="a .csv or .jsonl file, one letter a row (docs/letters-import.md)")
    imp.set_defaults(func=cmd_import)
    st = letters.add_parser("status", help="letters by department, status, channel and rule")
    st.add_argument("--department", choices=DEPARTMENTS, help="only this department")
    st.set_defaults(func=cmd_status)
    sh = letters.add_parser("show", help="one letter's state and history")
    sh.add_argument("letter_id", help="the letter's id, as its department system gave it")
    sh.set_defaults(func=cmd_show)


def _add_change_record(parser: argparse.ArgumentParser) -> None:
    """--reason and --by: why and by whom a rollout change is made, both kept in its history."""
    parser.add_argument("--reason", required=True, help="why, in words: kept in the history (required)")
    parser.add_argument(
        "--by",
        default=getpass.getuser(),
        help="who makes the change, kept in the history (default: your login name)",
    )


def _add_rollout_commands(rollout) -> None:
    from include.dijlepost.rollout import PHASES
    from include.dijlepost.waves import DEPARTMENTS

    rollout.add_parser("show", help="each department's rollout phase").set_defaults(func=cmd_rollout_show)
    rs = rollout.add_parser("set", help="change a department's rollout phase")
    rs.add_argument("department", help=f"one of {', '.join(DEPARTMENTS)}")  # checked by rollout.set_phase
    rs.add_argument("phase", help=f"one of {', '.join(PHASES)}")
    _add_change_record(rs)
    rs.add_argument("--pilot-file", help="lines 'citizen,<NRN>' or 'enterprise,<KBO>': the pilot allowlist")
    rs.add_argument(
        "--pilot-percent",
        metavar="N",
        help="0..100: also every recipient whose stable hash falls in the lowest N %%",
    )
    rs.set_defaults(func=cmd_rollout_set)
    rh = rollout.add_parser("history", help="phase changes, newest first: who, when, from, to, why")
    rh.add_argument("--department", help="only this department")
    rh.add_argument("--limit", type=_whole_number, default=50, help="at most this many changes (default 50)")
    rh.set_defaults(func=cmd_rollout_history)
    rr = rollout.add_parser(
        "shadow-report", help="share of letters that would have gone digital, and the saving"
    )
    rr.add_argument("department", help=f"one of {', '.join(DEPARTMENTS)}")
    rr.add_argument("--days", type=_whole_number, help="only letters decided in the last N days")
    rr.set_defaults(func=cmd_rollout_shadow_report)
    _add_exemption_commands(rollout)


def _add_exemption_commands(rollout) -> None:
    rx = rollout.add_parser("exemptions", help="the paper exemptions (by pseudonym), or their history")
    rx.add_argument("--history", action="store_true", help="every addition and removal, newest first")
    rx.add_argument("--limit", type=_whole_number, default=500, help="at most this many rows (default 500)")
    rx.set_defaults(func=cmd_exemptions)
    ex = rollout.add_parser("exempt", help="keep a recipient on paper whatever their eBox says")
    ex.add_argument("action", choices=("add", "remove"), help="add or remove the exemption")
    ex.add_argument("kind", choices=("citizen", "enterprise"), help="the kind of recipient")
    ex.add_argument(
        "recipient_id",
        help="national register number (citizen) or KBO number (enterprise); only its pseudonym is stored",
    )
    _add_change_record(ex)
    ex.set_defaults(func=cmd_exempt)


def _add_audit_commands(audit) -> None:
    at = audit.add_parser("trace", help="a letter's whole life in order, with the task log of each step")
    at.add_argument("letter_id", help="the letter's id")
    at.add_argument("--airflow-url", help=AIRFLOW_URL_HELP)
    at.set_defaults(func=cmd_audit_trace)
    ae = audit.add_parser("export", help="the events of a period (whole days, Europe/Brussels) as CSV")
    ae.add_argument(
        "--from", dest="date_from", required=True, metavar="YYYY-MM-DD", help="first day (Europe/Brussels)"
    )
    ae.add_argument(
        "--to",
        dest="date_to",
        required=True,
        metavar="YYYY-MM-DD",
        help="last day, included (Europe/Brussels)",
    )
    ae.add_argument("--format", choices=("csv",), default="csv", help="the file's format (CSV only)")
    ae.add_argument("--output", required=True, help="the file to write (replaced when complete)")
    ae.add_argument("--airflow-url", help=AIRFLOW_URL_HELP)
    ae.set_defaults(func=cmd_audit_export)
    av = audit.add_parser("verify", help="check the hash chain and that no event holds personal data")
    av.add_argument(
        "--anchor",
        action="append",
        default=[],
        metavar="SEQ:HASH",
        help="a chain head recorded earlier (e.g. in an evaluation report); repeatable",
    )
    av.set_defaults(func=cmd_audit_verify)


def _describe(parser: argparse.ArgumentParser) -> None:
    """Each command's --help starts with the line the list of commands shows for it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                child.description = child.description or helps.get(name)
                _describe(child)


def main(argv: list[str] | None = None) -> int:
    from include.dijlepost.settings import ConfigurationError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
