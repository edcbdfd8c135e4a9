"""What sharing the cores costs rendering: the bare loop alone, and beside an eBox delivery load.

    .venv/bin/python -m benchmarks.shared_cores [--letters 3000] [--rounds 2] [--processes N]

In the scale benchmark the render tasks need more CPU per letter than the bare loop beside it. Part
of that is the task's own work (reading, storing, recording: `benchmarks/render_chunk.py`). This
benchmark measures the other part, the price of sharing the cores, without Airflow:

`--processes` (default: every core) processes each render `--letters` letters, as the scale
benchmark's bare loop does, in three conditions, alternated for `--rounds` rounds:

1. `alone`: nothing else running;
2. `eBox load`: beside a delivery load as in a wave: the eBox sandbox (own process, HTTPS on loopback)
   and a client process publishing PDFs to it without pause, four calls in flight, as
   `chunk.deliver_to_ebox` does;
3. `eBox load, SCHED_BATCH` (Linux): the same load in the SCHED_BATCH policy, so that its wakeups (one
   per network answer) no longer preempt a rendering; the tick does. If the tax were the cost of
   being preempted, it would fall here.

Prints CPU milliseconds per letter of the rendering processes (user + kernel, after a warm-up), their
involuntary context switches per second, and the tax over `alone` of the same round. The load's own
rate is printed too, so that a condition with a starved load is seen as such.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import resource
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from benchmarks.cpu_accounting import ProcessClock

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 200
CONDITIONS = ("alone", "eBox load", "eBox load, SCHED_BATCH")


def _render(count: int, queue) -> None:
    """Child process: render `count` letters after a warm-up; report CPU and preemptions."""
    from benchmarks.rendering import TODAY, _letters
    from include.dijlepost.rendering import LetterRenderer

    renderer = LetterRenderer(today=TODAY)
    letters = list(_letters(count))
    for letter in letters[:WARM_UP]:
        renderer.render(letter)
    clock, preempted = ProcessClock(), resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    for letter in letters:
        renderer.render(letter)
    per = clock.per(count)
    preempted = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - preempted
    queue.put(
        {
            "cpu_ms": per["user_ms"] + per["kernel_ms"],
            "preemptions_per_s": preempted / (per["wall_ms"] * count / 1000),
        }
    )


def render_beside(processes: int, count: int) -> dict:
    """`processes` rendering processes at once; their mean CPU ms per letter and preemptions per second."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_render, args=(count, queue)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return {
        "cpu_ms": statistics.mean(r["cpu_ms"] for r in results),
        "preemptions_per_s": statistics.mean(r["preemptions_per_s"] for r in results),
    }


def _publish_forever(connection_file: str, counter_file: str) -> None:
    """Load process: publish one PDF over and over, four calls in flight, until killed. Every 200
    publications it writes how many it made, so the benchmark can report the load's rate."""
    import logging
    import threading

    from benchmarks.ebox_publication import invoice, sample_pdf
    from include.dijlepost.ebox.client import EboxClient
    from include.dijlepost.ebox.hook import config_from_connection

    logging.getLogger("dijlepost").setLevel(logging.WARNING)
    conn = json.loads(Path(connection_file).read_text())
    config = config_from_connection(
        "ebox_default", conn["host"], conn["login"], conn["password"], conn["extra"]
    )
    pdf, subject = sample_pdf()
    made, lock = [0], threading.Lock()

    def loop(worker: int) -> None:
        for i in itertools.count():
            letter_id = f"LOAD-{os.getpid()}-{worker}-{i:09d}"
            client.publish(invoice(letter_id, subject, pdf))
            with lock:
                made[0] += 1
                if made[0] % 200 == 0:
                    Path(counter_file).write_text(str(made[0]))

    with EboxClient(config) as client:
        threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


class EboxLoad:
    """The eBox sandbox and one publishing client, each its own process, optionally in SCHED_BATCH."""

    def __init__(self, directory: Path, batch: bool):
        self.directory, self.batch = directory, batch
        self.counter = directory / "published"
        self.procs: list[subprocess.Popen] = []

    def _policy(self) -> None:
        if self.batch:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))

    def __enter__(self) -> EboxLoad:
        from benchmarks.ebox_publication import CITIZEN_ID, start_sandbox

        sandbox, conn = start_sandbox(self.directory)
        self.procs.append(sandbox)
        if self.batch:  # the policy is per thread, and the sandbox serves from a thread of its own
            for thread in psutil.Process(sandbox.pid).threads():
                os.sched_setscheduler(thread.id, os.SCHED_BATCH, os.sched_param(0))
        verify = ssl.create_default_context(cafile=conn["extra"]["ca_bundle"])
        with httpx.Client(base_url=conn["host"].split("/REST/")[0], verify=verify) as admin:
            recipient = {"kind": "citizen", "id": CITIZEN_ID}
            admin.post("/_sandbox/recipients", json=[recipient]).raise_for_status()
        (self.directory / "conn.json").write_text(json.dumps(conn))
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from benchmarks.shared_cores import _publish_forever; "
                    "_publish_forever(sys.argv[1], sys.argv[2])",
                    str(self.directory / "conn.json"),
                    str(self.counter),
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                preexec_fn=self._policy,
            )
        )
        deadline = time.monotonic() + 60
        while self.published() < 400:  # the load is running at full speed
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                raise RuntimeError("the eBox load did not start")
            time.sleep(0.2)
        return self

    def published(self) -> int:
        try:
            return int(self.counter.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def __exit__(self, *exc_info) -> None:
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def measure(condition: str, processes: int, letters: int, directory: Path) -> dict:
    if condition == "alone":
        return render_beside(processes, letters) | {"load_per_s": None}
    with EboxLoad(directory, batch=condition.endswith("SCHED_BATCH")) as load:
        start, t = load.published(), time.perf_counter()
        result = render_beside(processes, letters)
        rate = (load.published() - start) / (time.perf_counter() - t)
    return result | {"load_per_s": rate}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--letters", type=int, default=3000, help="letters per rendering process")
    parser.add_argument("--processes", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    conditions = [c for c in CONDITIONS if c != CONDITIONS[2] or hasattr(os, "SCHED_BATCH")]
    print(f"{args.processes} rendering processes of {args.letters} letters each, {os.cpu_count()} CPUs")
    print(
        f"{'round':>5}  {'condition':<24}{'CPU ms/letter':>14}{'tax':>8}{'preempted/s':>13}{'load pub/s':>12}"
    )
    for round_no in range(1, args.rounds + 1):
        alone = None
        for condition in conditions:
            with tempfile.TemporaryDirectory(prefix="shared-cores-") as tmp:
                r = measure(condition, args.processes, args.letters, Path(tmp))
            alone = alone or r["cpu_ms"]
            load = f"{r['load_per_s']:>12.0f}" if r["load_per_s"] is not None else f"{'-':>12}"
            tax = (r["cpu_ms"] / alone - 1) * 100
            print(
                f"{round_no:>5}  {condition:<24}{r['cpu_ms']:>14.3f}{tax:>7.1f}%"
                f"{r['preemptions_per_s']:>13.0f}{load}",
                flush=True,
            )


if __name__ == "__main__":
    main()
