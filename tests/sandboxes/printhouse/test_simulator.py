"""The simulated print house: takes complete batches from the inbox, checks them against their
checksum file and manifest, answers in the agreed formats; the sandbox server can run it by itself."""

from __future__ import annotations

import hashlib
import json
import time
import zipfile

import pytest

from include.dijlepost.printhouse.acks import parse_ack, parse_returns
from include.dijlepost.printhouse.batch import batch_id_for, build_batch_zip, write_checksum_file
from include.dijlepost.printhouse.hook import PrintHouseHook
from include.dijlepost.printhouse.upload import upload_batch, upload_checksum
from sandboxes.printhouse.server import PrintHouseSftpServer
from sandboxes.printhouse.simulator import PrinterBehaviour, print_log_path, printed_letters, process_inbox
from tests.include.dijlepost.printhouse.test_batch import make_letter


def put_batch(tmp_path, root, n=6, with_checksum=True):
    letters = [make_letter(tmp_path, f"S-{i:03d}") for i in range(n)]
    batch_id = batch_id_for("finance", "non_prior", [l.letter_id for l in letters])
    built = build_batch_zip(batch_id, letters, tmp_path / "zips")
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    (root / "outbox").mkdir(parents=True, exist_ok=True)
    (root / "inbox" / built.path.name).write_bytes(built.path.read_bytes())
    if with_checksum:
        sidecar = write_checksum_file(built)
        (root / "inbox" / sidecar.name).write_bytes(sidecar.read_bytes())
    return built


def test_answers_a_complete_batch_and_takes_it_out_of_the_inbox(tmp_path):
    root = tmp_path / "root"
    built = put_batch(tmp_path, root)
    done = process_inbox(root, PrinterBehaviour(reject_every=3, return_every=2))
    assert done["batches"] == {built.batch_id: {"accepted": 4, "rejected": 2, "returned": 2}}
    ack = parse_ack("x.ack.csv", (root / "outbox" / f"{built.batch_id}.ack.csv").read_bytes())
    assert [(r.letter_id, r.result) for r in ack] == [
        ("S-000", "accepted"),
        ("S-001", "accepted"),
        ("S-002", "rejected"),
        ("S-003", "accepted"),
        ("S-004", "accepted"),
        ("S-005", "rejected"),
    ]
    returns = parse_returns(
        "returned-x.csv", (root / "outbox" / f"returned-{built.batch_id}.csv").read_bytes()
    )
    assert returns == [("S-001", "unknown_address"), ("S-004", "unknown_address")]
    assert list((root / "inbox").iterdir()) == []
    assert sorted(p.name for p in (root / "printed").iterdir()) == [
        built.path.name,
        built.path.name + ".sha256",
    ]
    assert [p.name for p in (root / "outbox").iterdir() if p.name.startswith(".")] == []
    assert process_inbox(root)["batches"] == {}  # nothing twice


def test_the_print_log_counts_every_letter_each_time_it_is_printed(tmp_path):
    """Like a real print house, the simulator prints a batch it finds again; its log shows it."""
    root = tmp_path / "root"
    built = put_batch(tmp_path, root, n=4)
    process_inbox(root, PrinterBehaviour(reject_every=4))
    assert printed_letters(root) == {"S-000": 1, "S-001": 1, "S-002": 1}  # S-003 rejected: not printed
    assert print_log_path(root).parent == tmp_path  # beside the served tree
    put_batch(tmp_path, root, n=4)  # the same batch sent again
    assert list(process_inbox(root)["batches"]) == [built.batch_id]
    assert printed_letters(root) == {"S-000": 2, "S-001": 2, "S-002": 2, "S-003": 1}


def test_a_batch_without_its_checksum_file_is_not_taken_yet(tmp_path):
    root = tmp_path / "root"
    built = put_batch(tmp_path, root, with_checksum=False)
    assert process_inbox(root) == {"batches": {}, "left_in_inbox": {}}
    assert (root / "inbox" / built.path.name).exists() and list((root / "outbox").iterdir()) == []


def test_a_zip_that_does_not_match_its_checksum_is_left_in_the_inbox(tmp_path):
    root = tmp_path / "root"
    built = put_batch(tmp_path, root)
    zip_path = root / "inbox" / built.path.name
    data = bytearray(zip_path.read_bytes())
    data[100] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    done = process_inbox(root)
    assert "does not match its checksum file" in done["left_in_inbox"][built.batch_id]
    assert zip_path.exists() and list((root / "outbox").iterdir()) == []


def test_a_pdf_that_differs_from_the_manifest_is_rejected(tmp_path):
    root = tmp_path / "root"
    built = put_batch(tmp_path, root, n=2)
    # Rewrite the zip with one PDF changed (same manifest), and a checksum file that matches the new zip.
    tampered = root / "inbox" / built.path.name
    with zipfile.ZipFile(built.path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info, data + b"%x\n" if info.filename == "S-001.pdf" else data)
    digest = hashlib.sha256(tampered.read_bytes()).hexdigest()
    (root / "inbox" / f"{built.path.name}.sha256").write_text(f"{digest}  {built.path.name}\n")
    process_inbox(root)
    ack = parse_ack("x.ack.csv", (root / "outbox" / f"{built.batch_id}.ack.csv").read_bytes())
    assert [(r.letter_id, r.result, r.reason) for r in ack] == [
        ("S-000", "accepted", ""),
        ("S-001", "rejected", "PDF does not match the manifest checksum"),
    ]


def test_sandbox_server_plays_the_print_house(tmp_path, monkeypatch):
    letters = [make_letter(tmp_path, f"SB-{i}") for i in range(3)]
    built = build_batch_zip(
        batch_id_for("gas", "non_prior", [l.letter_id for l in letters]), letters, tmp_path / "z"
    )
    with PrintHouseSftpServer(
        tmp_path / "ph", printer=PrinterBehaviour(reject_every=3), poll_seconds=0.05
    ) as server:
        monkeypatch.setenv("AIRFLOW_CONN_PRINTHOUSE_SFTP", json.dumps(server.airflow_connection()))
        hook = PrintHouseHook()
        with hook.get_managed_conn() as sftp:
            upload_batch(sftp, built.path, hook.inbox_dir)
            upload_checksum(sftp, built, hook.inbox_dir)
            ack_name = f"{built.batch_id}.ack.csv"
            deadline = time.monotonic() + 10
            while ack_name not in sftp.listdir(hook.outbox_dir):
                if time.monotonic() > deadline:
                    pytest.fail("the sandbox did not acknowledge the batch")
                time.sleep(0.05)
            with sftp.open(f"{hook.outbox_dir}/{ack_name}") as f:
                ack = parse_ack(ack_name, f.read())
    assert [r.result for r in ack] == ["accepted", "accepted", "rejected"]
