"""What the hash chain of `letter_events` (migration 0005) costs: events/s written by
`outbox.record_events`, with the chain trigger and without it (the same INSERTs with triggers disabled).

    .venv/bin/python -m benchmarks.audit_chain [--events 10000] [--writers 4]

Uses a fresh, migrated database on DIJLEPOST_TEST_PG (default postgresql://postgres@127.0.0.1:5432),
dropped at the end.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

import psycopg

from benchmarks.scratch_db import scratch_database
from include.dijlepost.audit import verify
from include.dijlepost.outbox import RunContext, record_events

CTX = RunContext(
    dag_id="letters_finance", run_id="bench", task_id="render_letters", map_index=0, try_number=1
)


def events(n: int, tag: str):
    return [(f"{tag}-{i:06d}", "rendered", {"sha256": "ab" * 32, "pages": 2}) for i in range(n)]


def one_transaction(url: str, n: int, chained: bool) -> float:
    with psycopg.connect(url) as conn:
        if not chained:
            conn.execute("SET session_replication_role = replica")  # triggers off: the baseline
            conn.execute("SELECT set_config('dijlepost.audit_break_glass', 'on', true)")
        t = time.perf_counter()
        with conn.cursor() as cur:
            if chained:
                record_events(cur, CTX, events(n, uuid.uuid4().hex[:6]))
            else:  # the same rows with chain columns filled by hand (NOT NULL)
                cur.executemany(
                    "INSERT INTO letter_events (letter_id, event, details, dag_id, run_id, task_id, map_index, "
                    "try_number, chain_seq, prev_hash, hash) VALUES (%s, %s, '{}', 'd', 'r', 't', 0, 1, "
                    "-nextval('letter_events_event_id_seq'), decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex'))",
                    [(lid, ev) for lid, ev, _ in events(n, uuid.uuid4().hex[:6])],
                )
        conn.commit()
        return time.perf_counter() - t


def concurrent(url: str, writers: int, transactions: int, per_tx: int) -> float:
    start = threading.Barrier(writers + 1)

    def work() -> None:
        with psycopg.connect(url) as conn:
            start.wait()
            for _ in range(transactions):
                with conn.cursor() as cur:
                    record_events(cur, CTX, events(per_tx, uuid.uuid4().hex[:6]))
                conn.commit()

    threads = [threading.Thread(target=work) for _ in range(writers)]
    for th in threads:
        th.start()
    start.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args()
    with scratch_database() as url:
        n = args.events
        chained = one_transaction(url, n, chained=True)
        tx, per = 50, 100
        wall = concurrent(url, args.writers, tx, per)
        total = args.writers * tx * per
        with psycopg.connect(url) as conn:
            t = time.perf_counter()
            v = verify(conn)
            el = time.perf_counter() - t
        base = one_transaction(url, n, chained=False)  # last: its rows are outside the chain
        print(
            f"one transaction, {n} events via executemany: chained {n / chained:,.0f} events/s "
            f"({chained:.2f} s), triggers off {n / base:,.0f} events/s ({base:.2f} s)"
        )
        print(
            f"{args.writers} concurrent writers x {tx} transactions x {per} events: {total / wall:,.0f} events/s "
            f"({wall:.2f} s)"
        )
        print(f"audit verify: {v.checked} events, ok={v.ok}, {v.checked / el:,.0f} events/s ({el:.2f} s)")


if __name__ == "__main__":
    main()
