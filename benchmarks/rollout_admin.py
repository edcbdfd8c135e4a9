"""How fast the rollout admin page and its API answer on a large outbox: the page (all departments
with recent runs, history and shadow reports) and the shadow report alone, with N letters spread over
the three departments and daily runs (one run a day for --runs days), a third of them decided in
phase shadow.

    .venv/bin/python -m benchmarks.rollout_admin [--letters 300000] [--runs 600] [--repeat 5]

Uses a fresh, migrated database on DIJLEPOST_TEST_PG (default postgresql://postgres@127.0.0.1:5432),
dropped at the end. Prints median and worst wall-clock times in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from fastapi.testclient import TestClient

from benchmarks.scratch_db import scratch_database
from include.dijlepost.admin.app import create_app
from include.dijlepost.admin.deps import Identity
from include.dijlepost.admin.figures import recent_runs, shadow_report
from include.dijlepost.tariffs import Tariffs

FILL = """
INSERT INTO letters (letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name, street,
                     postal_code, city, language, registered, status, claim_run_id, claimed_at, rollout_phase,
                     channel, decision_rule, decision_reason, shadow_channel, decided_at, pdf_pages, final_at,
                     quarantine_reason)
SELECT 'B-' || g,
       (ARRAY['finance', 'gas', 'economy_housing'])[1 + g % 3],
       'invoice', 'citizen', '85073003328', 'Bench', 'Bruul 1', '2800', 'Mechelen', 'nl', g % 50 = 0,
       CASE WHEN g % 97 = 0 THEN 'quarantined' WHEN g % 3 = 2 OR g % 2 = 0 THEN 'handed_to_print'
            ELSE 'delivered_ebox' END,
       'letters_bench:run-' || (g % %(runs)s), now() - (g % %(runs)s) * interval '1 day',
       CASE WHEN g % 3 = 2 THEN 'shadow' ELSE 'live' END,
       CASE WHEN g % 97 = 0 THEN NULL WHEN g % 3 = 2 OR g % 2 = 0 THEN 'paper' ELSE 'ebox' END,
       'bench', 'bench',
       CASE WHEN g % 97 = 0 THEN NULL WHEN g % 3 = 2 THEN (ARRAY['ebox', 'paper'])[1 + g % 2] END,
       now() - (g % %(runs)s) * interval '1 day', 1 + g % 4, now() - (g % %(runs)s) * interval '1 day',
       CASE WHEN g % 97 = 0 THEN 'bench' END
  FROM generate_series(1, %(n)s) g
"""


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--letters", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=600)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with scratch_database("dijlepost_bench_admin") as url:
        with psycopg.connect(url) as conn:
            t = time.perf_counter()
            conn.execute(FILL.replace("%(runs)s", str(args.runs)).replace("%(n)s", str(args.letters)))
            conn.commit()
            conn.execute("ANALYZE letters")
            conn.commit()
            print(f"filled {args.letters} letters in {args.runs} runs in {time.perf_counter() - t:.1f} s")
            tariffs = Tariffs()
            med, worst = timed(lambda: recent_runs(conn, "gas"), args.repeat)
            print(f"recent_runs(gas)                  median {med:8.1f} ms   worst {worst:8.1f} ms")
            med, worst = timed(lambda: shadow_report(conn, "gas", tariffs), args.repeat)
            print(f"shadow_report(gas)                median {med:8.1f} ms   worst {worst:8.1f} ms")
        app = create_app(lambda: psycopg.connect(url), lambda: Identity("bench", True), tariffs=Tariffs)
        with TestClient(app) as client:
            med, worst = timed(lambda: client.get("/").raise_for_status(), args.repeat)
            print(f"GET / (the page)                  median {med:8.1f} ms   worst {worst:8.1f} ms")
            med, worst = timed(
                lambda: client.get("/api/v1/departments/gas/shadow-report").raise_for_status(), args.repeat
            )
            print(f"GET /api/v1/.../shadow-report     median {med:8.1f} ms   worst {worst:8.1f} ms")


if __name__ == "__main__":
    main()
