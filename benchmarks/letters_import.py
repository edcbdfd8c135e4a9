"""What `dijlepost letters import` costs: CPU per letter and the process's peak memory, per file size.

    .venv/bin/python -m benchmarks.letters_import [--sizes 10000,50000,200000]

Each size is a JSON Lines file of valid letters of the three departments (the demo's letters, repeated
under new ids), imported by the real command in its own process into a fresh, migrated database on
DIJLEPOST_TEST_PG (default postgresql://postgres@127.0.0.1:5432), dropped at the end. The import
streams: its peak memory should not grow with the file. A line per size as it finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from benchmarks.scratch_db import scratch_database
from demo import dataset
from include.dijlepost import clock
from include.dijlepost.db.logins import ensure_login

LOGIN = "dijlepost_bench_pipeline"
DISTINCT = 5_000  # letters of the demo mix; a bigger file repeats them under new ids


def write_file(path: Path, n: int) -> None:
    mix = {"finance": DISTINCT // 2, "gas": DISTINCT // 4, "economy_housing": DISTINCT // 4}
    base = dataset.build(seed=3107, mix=mix, today=clock.today(), prefix="I", mistakes=False).letters
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            row = base[i % len(base)]
            f.write(json.dumps({**row, "letter_id": f"IMP-{i:07d}"}, ensure_ascii=False) + "\n")


def import_once(url: str, path: Path) -> dict:
    """The command in a child process, as the pipeline's login (the import refuses a superuser): its CPU
    (user + system), wall time and peak RSS."""
    with psycopg.connect(url) as admin:
        ensure_login(admin, LOGIN, "dijlepost_pipeline")
    parts = urlsplit(url)
    as_pipeline = urlunsplit(parts._replace(netloc=f"{LOGIN}@{parts.hostname}:{parts.port or 5432}"))
    env = {**os.environ, "DIJLEPOST_DATABASE_URL": as_pipeline}
    command = [sys.executable, "-m", "include.dijlepost.cli", "letters", "import", str(path)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"letters import failed ({status}): {err[-2000:]}")
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "said": (out + err).strip().splitlines()[-1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,50000,200000", help="letters per file, comma-separated")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"letters-{n}.jsonl"
            write_file(path, n)
            size_mb = path.stat().st_size / 1e6
            with scratch_database("dijlepost_bench_import") as url:
                r = import_once(url, path)
            print(
                f"{n:>7} letters ({size_mb:.0f} MB): {r['cpu_s'] / n * 1000:.2f} ms CPU per letter, "
                f"{n / r['wall_s']:.0f} letters/s, peak RSS {r['peak_rss_mib']:.0f} MiB  [{r['said']}]",
                flush=True,
            )


if __name__ == "__main__":
    main()
