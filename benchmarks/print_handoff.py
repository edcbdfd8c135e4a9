"""Print hand-over throughput: building batch zips and uploading them over loopback SFTP.

    .venv/bin/python -m benchmarks.print_handoff [--letters 10000] [--server sshd|sandbox]

Letters are real PDFs from the LetterRenderer (a few dozen rendered, then copied with a unique trailing
comment so every file has its own SHA-256, as in production). They are planned into batches with the
default wave limits (2000 letters, 200 MB), each batch is built (zip + manifest, every PDF's hash
checked while zipping) and uploaded through PrintHouseHook with the production protocol (.part, size
check, rename, then the .sha256 file). `--server sshd` (default when run as root with OpenSSH installed)
starts a real OpenSSH sshd with a chrooted SFTP user, `sandbox` the asyncssh sandbox of the demo.
Prints letters/s and MB/s for the build and for the upload, and what the look-up the hand-over makes
before sending a batch (is it at the print house already?) costs per batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from demo.sample_payloads import sample_payload
from include.dijlepost.printhouse.batch import BatchLetter, address_lines, build_batch_zip, postage_class_for
from include.dijlepost.printhouse.handoff import MIB, PlannedLetter, plan_batches
from include.dijlepost.printhouse.upload import Whereabouts, find_batch, upload_batch, upload_checksum
from include.dijlepost.waves import ALL_LETTER_TYPES, WAVES

TODAY = date(2026, 3, 2)
DISTINCT_RENDERS = 40


def render_samples(n: int) -> list[tuple[bytes, int]]:
    from include.dijlepost.rendering import LetterRenderer

    renderer = LetterRenderer(today=TODAY)
    types = sorted(t for t, d in ALL_LETTER_TYPES.items() if d == "finance")
    out = []
    for i in range(n):
        letter_type = types[i % len(types)]
        letter = {
            "letter_id": f"BENCH-{i}",
            "department": "finance",
            "letter_type": letter_type,
            "recipient_kind": "citizen",
            "recipient_id": "85073003328",
            "recipient_name": "An Peeters",
            "street": "Bruul 12",
            "postal_code": "2800",
            "city": "Mechelen",
            "country": "BE",
            "language": ("nl", "fr", "de")[i % 3],
            "registered": False,
            "payload": sample_payload(letter_type, random.Random(i), TODAY),
            "created_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
        }
        doc = renderer.render(letter)
        out.append((doc.pdf, doc.pages))
    return out


def make_letters(directory: Path, count: int) -> list[BatchLetter]:
    import hashlib

    samples = render_samples(DISTINCT_RENDERS)
    directory.mkdir(parents=True, exist_ok=True)
    letters = []
    for i in range(count):
        letter_id = f"FIN-2026-{i:06d}"
        pdf, pages = samples[i % len(samples)]
        data = pdf + f"%dijlepost-bench {letter_id}\n".encode()
        path = directory / f"{letter_id}.pdf"
        path.write_bytes(data)
        registered = i % 10 == 0
        letters.append(
            BatchLetter(
                letter_id=letter_id,
                pdf_path=path,
                pdf_sha256=hashlib.sha256(data).hexdigest(),
                pages=pages,
                postage_class=postage_class_for(registered),
                registered=registered,
                address_lines=address_lines("An Peeters", "Bruul 12", "2800", "Mechelen", "BE"),
                country="BE",
            )
        )
    return letters


def start_server(kind: str, state: Path):
    if kind == "sshd":
        from sandboxes.services import start_sshd

        return start_sshd()
    from sandboxes.printhouse.server import PrintHouseSftpServer

    return PrintHouseSftpServer(state / "sandbox").start()


def main(argv: list[str] | None = None) -> None:
    default_server = "sshd" if os.geteuid() == 0 and Path("/usr/sbin/sshd").exists() else "sandbox"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--letters", type=int, default=10_000)
    parser.add_argument("--server", choices=("sshd", "sandbox"), default=default_server)
    args = parser.parse_args(argv)
    for name in ("dijlepost", "paramiko", "asyncssh", "fontTools"):
        logging.getLogger(name).setLevel(logging.WARNING)

    wave = WAVES["finance"]
    work = Path(tempfile.mkdtemp(prefix="dijlepost-bench-print-"))
    server = None
    try:
        t0 = time.perf_counter()
        letters = make_letters(work / "pdf", args.letters)
        pdf_bytes = sum(l.pdf_path.stat().st_size for l in letters)
        print(
            f"prepared {len(letters)} letters ({pdf_bytes / MIB:.1f} MB of PDF) in {time.perf_counter() - t0:.1f} s"
        )
        by_id = {l.letter_id: l for l in letters}
        planned = [
            PlannedLetter(l.letter_id, l.postage_class, TODAY, l.pdf_path.stat().st_size) for l in letters
        ]
        batches = plan_batches(
            "finance", planned, wave.print_batch_max_letters, wave.print_batch_max_mb * MIB
        )

        t0 = time.perf_counter()
        built = [
            build_batch_zip(b.batch_id, [by_id[i] for i in b.letter_ids], work / "zips") for b in batches
        ]
        build_s = time.perf_counter() - t0
        zip_bytes = sum(b.size for b in built)

        server = start_server(args.server, work)
        os.environ["AIRFLOW_CONN_PRINTHOUSE_SFTP"] = json.dumps(server.airflow_connection())
        from include.dijlepost.printhouse.hook import PrintHouseHook

        hook = PrintHouseHook()
        t0 = time.perf_counter()
        with hook.get_managed_conn() as sftp:
            for b in built:
                upload_batch(sftp, b.path, hook.inbox_dir)
                upload_checksum(sftp, b, hook.inbox_dir)
        upload_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with hook.get_managed_conn() as sftp:  # a rerun: everything recognised, nothing sent again
            again = [upload_batch(sftp, b.path, hook.inbox_dir).already_present for b in built]
        rerun_s = time.perf_counter() - t0
        assert all(again)
        # The look-up the hand-over makes before it sends a batch: for a batch the print house does not
        # have, every place is looked at (inbox, taken folder, outbox and its two subfolders).
        lookups = 50
        with hook.get_managed_conn() as sftp:
            t0 = time.perf_counter()
            for i in range(lookups):
                assert find_batch(sftp, f"finance-non_prior-{i:016x}", hook.folders) is Whereabouts.NOT_THERE
            lookup_ms = (time.perf_counter() - t0) / lookups * 1000

        n = len(letters)
        print(f"server: {args.server} on loopback; {len(built)} batches, {zip_bytes / MIB:.1f} MB of zip")
        print(
            f"build:  {build_s:6.2f} s  {n / build_s:8.0f} letters/s  {zip_bytes / MIB / build_s:7.1f} MB/s"
        )
        print(
            f"upload: {upload_s:6.2f} s  {n / upload_s:8.0f} letters/s  {zip_bytes / MIB / upload_s:7.1f} MB/s"
        )
        print(f"total:  {build_s + upload_s:6.2f} s  {n / (build_s + upload_s):8.0f} letters/s")
        print(f"rerun (all batches already there): {rerun_s:.2f} s")
        print(f"look-up of a batch before it is sent (not at the print house): {lookup_ms:.1f} ms per batch")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
