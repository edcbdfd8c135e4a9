"""Publication throughput to the eBox sandbox, at 0 ms and 100 ms injected latency per call.

    .venv/bin/python -m benchmarks.ebox_publication [--letters 400] [--latencies 0 100] [--concurrency 4]
    .venv/bin/python -m benchmarks.ebox_publication --unavailable [--letters 40] [--budget 60]

The sandbox runs as its own process (HTTPS on loopback, SQLite state file), as in the demo, so the
client and the server do not share a GIL. Each letter is one real rendered PDF (a finance letter from
the demo data set) published with its own Idempotency-Key, exactly as `ebox.delivery.deliver_chunk_to_ebox`
does it: a thread pool of `concurrency` workers over one EboxClient, whose own limit
(`max_concurrency`, the Connection's extra, default 4) bounds the calls in flight. The client asks
for its token before the clock starts. Prints letters/s, the latency of one publication, and the
CPU per publication of the client (this process) and of the sandbox (its own process).

`--unavailable` measures instead what an eBox that answers every publication 503, or 429 with
`Retry-After: 5`, costs: the requests that reach it and the time until the client's circuit breaker
gives up at its outage budget (`--budget`, seconds), letters published by 4 threads over one client
as the delivery task does.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import ssl
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import httpx
import psutil

from include.dijlepost.ebox.client import EboxClient, EboxOutageError, Publication
from include.dijlepost.ebox.hook import config_from_connection

ROOT = Path(__file__).resolve().parents[1]
CITIZEN_ID = "85073003328"


def sample_pdf() -> tuple[bytes, str]:
    from demo import dataset
    from include.dijlepost.rendering import LetterRenderer

    row = dataset.build(
        seed=7, mix={"finance": 1}, today=date(2026, 3, 2), prefix="BENCH", mistakes=False
    ).letters[0]
    row = {**row, "created_at": None}
    renderer = LetterRenderer(today=date(2026, 3, 2))
    return renderer.render(row).pdf, renderer.subject(row)


def invoice(letter_id: str, subject: str, pdf: bytes) -> Publication:
    """One finance invoice to the benchmark's citizen, the same for every publication but its id."""
    return Publication(
        letter_id=letter_id,
        recipient_kind="citizen",
        recipient_id=CITIZEN_ID,
        language="nl",
        subject=subject,
        message_type_id="MECH-FIN-INVOICE",
        registered=False,
        pdf=pdf,
        filename=f"{letter_id}.pdf",
    )


def start_sandbox(directory: Path) -> tuple[subprocess.Popen, dict]:
    """The sandbox in its own process (`sandboxes.services`), once it serves; its process and Connection."""
    from sandboxes.services import start_ebox_sandbox

    service, client, connection = start_ebox_sandbox(directory, log=directory / "sandbox.log")
    client.close()
    return service.proc, connection


def run(
    letters: int,
    latency_ms: int,
    concurrency: int,
    conn: dict,
    admin: httpx.Client,
    pdf: bytes,
    subject: str,
    tag: str,
    sandbox_pid: int | None = None,
) -> dict:
    assert admin.post("/_sandbox/reset").status_code == 204
    assert admin.post("/_sandbox/recipients", json=[{"kind": "citizen", "id": CITIZEN_ID}]).status_code == 200
    assert admin.put("/_sandbox/faults", json={"latency_ms": latency_ms}).status_code == 200
    extra = {**conn["extra"], "max_concurrency": concurrency}
    config = config_from_connection("ebox_default", conn["host"], conn["login"], conn["password"], extra)
    pubs = [invoice(f"BENCH-{tag}-{i:06d}", subject, pdf) for i in range(letters)]
    durations: list[float] = []

    with EboxClient(config) as client:
        client._access_token()

        def publish(pub: Publication) -> str:
            t0 = time.perf_counter()
            kind = client.publish(pub).kind
            durations.append(time.perf_counter() - t0)
            return kind

        sandbox = psutil.Process(sandbox_pid) if sandbox_pid else None
        server_cpu = sum(sandbox.cpu_times()[:2]) if sandbox else 0.0
        client_cpu = time.process_time()
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            kinds = list(pool.map(publish, pubs))
        elapsed = time.perf_counter() - start
        client_cpu = time.process_time() - client_cpu
        server_cpu = sum(sandbox.cpu_times()[:2]) - server_cpu if sandbox else float("nan")
    stored = len(admin.get("/_sandbox/publications").json())
    if kinds.count("published") != letters or stored != letters:
        raise RuntimeError(
            f"expected {letters} publications, got {kinds.count('published')} answers and {stored} stored"
        )
    durations.sort()
    return {
        "latency_ms": latency_ms,
        "concurrency": concurrency,
        "letters": letters,
        "seconds": elapsed,
        "letters_per_s": letters / elapsed,
        "p50_ms": statistics.median(durations) * 1000,
        "p95_ms": durations[int(len(durations) * 0.95) - 1] * 1000,
        "client_cpu_ms": client_cpu / letters * 1000,
        "sandbox_cpu_ms": server_cpu / letters * 1000,
    }


def unavailable(
    letters: int, budget: float, conn: dict, admin: httpx.Client, pdf: bytes, subject: str
) -> None:
    print(f"an eBox that does not publish: {letters} letters, 4 threads, outage budget {budget:.0f} s")
    print(f"{'answer':>28} {'requests':>9} {'seconds':>8}  letters given back")
    for name, faults in (
        ("503 to every call", {"error_rate": 1.0, "error_status": 503}),
        ("429 with Retry-After: 5", {"error_rate": 1.0, "error_status": 429, "retry_after_seconds": 5}),
    ):
        admin.post("/_sandbox/reset").raise_for_status()
        admin.post("/_sandbox/recipients", json=[{"kind": "citizen", "id": CITIZEN_ID}]).raise_for_status()
        extra = {**conn["extra"], "outage_budget_seconds": budget}
        config = config_from_connection("ebox_default", conn["host"], conn["login"], conn["password"], extra)
        with EboxClient(config) as client:
            client._access_token()
            admin.put("/_sandbox/faults", json=faults).raise_for_status()

            def publish(i: int) -> str:
                pub = invoice(f"DOWN-{i:06d}", subject, pdf)
                try:
                    return client.publish(pub).kind
                except EboxOutageError:
                    return "given back"

            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=4) as pool:
                kinds = list(pool.map(publish, range(letters)))
            elapsed = time.perf_counter() - start
            requests = client.calls["transient"] + client.calls["ok"]
        print(
            f"{name:>28} {requests:>9} {elapsed:>8.1f}  {kinds.count('given back')} of {letters}", flush=True
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--letters", type=int, default=400)
    parser.add_argument("--latencies", type=int, nargs="+", default=[0, 100])
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[4],
        help="client-side limits to measure (the default 4 is what production uses)",
    )
    parser.add_argument("--unavailable", action="store_true", help="measure an eBox that publishes nothing")
    parser.add_argument("--budget", type=float, default=60, help="with --unavailable: the outage budget, s")
    args = parser.parse_args(argv)
    for name in ("dijlepost", "httpx", "fontTools"):  # one line per letter would drown the figures
        logging.getLogger(name).setLevel(logging.WARNING)
    pdf, subject = sample_pdf()
    with tempfile.TemporaryDirectory(prefix="ebox-bench-") as tmp:
        proc, conn = start_sandbox(Path(tmp))
        try:
            verify = ssl.create_default_context(cafile=conn["extra"]["ca_bundle"])
            with httpx.Client(base_url=conn["host"].split("/REST/")[0], verify=verify) as admin:
                if args.unavailable:
                    unavailable(args.letters, args.budget, conn, admin, pdf, subject)
                    return
                print(
                    f"eBox publication throughput: {args.letters} letters of {len(pdf)} bytes (one PDF each), "
                    f"sandbox in its own process over HTTPS, {os.cpu_count()} CPUs"
                )
                print(
                    f"{'latency':>8} {'limit':>6} {'letters/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'seconds':>8}"
                    f" {'client CPU ms':>14} {'sandbox CPU ms':>15}  (CPU per letter)"
                )
                for latency in args.latencies:
                    for concurrency in args.concurrency:
                        r = run(
                            args.letters,
                            latency,
                            concurrency,
                            conn,
                            admin,
                            pdf,
                            subject,
                            f"{latency}-{concurrency}",
                            proc.pid,
                        )
                        print(
                            f"{r['latency_ms']:>6}ms {r['concurrency']:>6} {r['letters_per_s']:>10.1f} "
                            f"{r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['seconds']:>8.2f}"
                            f" {r['client_cpu_ms']:>14.2f} {r['sandbox_cpu_ms']:>15.2f}",
                            flush=True,
                        )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
