"""PDF storage (`documents.py`) as the render stage uses it: every PDF and its directory is on disk
before the rendering is recorded, and a failed sync of the volume records nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from include.dijlepost import documents, pipeline
from include.dijlepost.ebox import delivery
from include.dijlepost.outbox import claim
from include.dijlepost.rollout import read_state
from tests.support import stages
from tests.support.stages import WORK, seed

pytestmark = pytest.mark.integration
renderer, client = stages.renderer, stages.client  # fixtures


def _render_first_chunk_recording_syncs(
    db, ebox, client, renderer, tmp_path, monkeypatch, syncfs, sync_each_file=False
):
    """Render a 4-letter chunk into a new document root; return what was synced, in order:
    (kind, path, letters recorded as rendered by then), kind 'syncfs' or 'fsync'."""
    import os

    seed(db, ebox, 4, active_share=0.5, seed_no=8)
    c = claim(
        db,
        WORK,
        batch_size=1000,
        chunk_size=1000,
        lease=timedelta(hours=3),
    )
    delivery.check_activation(db, WORK, client=client, freshness=timedelta(days=7))
    pipeline.decide_claim(db, WORK, state=read_state(db, "finance"))
    synced: list[tuple[str, str, int]] = []

    def recorded():
        return db.execute("SELECT count(*) FROM letters WHERE rendered_at IS NOT NULL").fetchone()[0]

    def fsync(fd, real=os.fsync):
        real(fd)
        synced.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}"), recorded()))

    def recording_syncfs(fd):
        synced.append(("syncfs", os.path.realpath(f"/proc/self/fd/{fd}"), recorded()))
        return syncfs(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(documents, "SYNCFS", recording_syncfs if syncfs else None)
    pipeline.render_chunk(
        db,
        WORK.for_chunk(c.chunks[0]),
        renderer=renderer,
        document_root=tmp_path / "docs",
        sync_each_file=sync_each_file,
    )
    assert recorded() == 4
    return synced


def test_rendered_pdfs_and_their_directories_are_on_disk_before_the_rendering_is_recorded(
    db, ebox, client, renderer, tmp_path, monkeypatch
):
    """One syncfs of the document volume, after the last PDF is written, then the directories."""
    synced = _render_first_chunk_recording_syncs(
        db, ebox, client, renderer, tmp_path, monkeypatch, documents.SYNCFS
    )
    root = tmp_path / "docs"
    department = root / "finance"  # created by this first rendering, as is docs/
    directories = [str(d.resolve()) for d in (department, root, tmp_path)]
    assert synced == [("syncfs", str(root.resolve()), 0)] + [("fsync", d, 0) for d in directories]
    assert len(list(department.glob("*.pdf"))) == 4


@pytest.mark.parametrize("why", ["libc has no syncfs", "DIJLEPOST_DOCUMENT_SYNC=file"])
def test_without_syncfs_every_pdf_is_fsynced_before_the_rendering_is_recorded(
    db, ebox, client, renderer, tmp_path, monkeypatch, why
):
    each_file = why.startswith("DIJLEPOST")
    synced = _render_first_chunk_recording_syncs(
        db, ebox, client, renderer, tmp_path, monkeypatch, documents.SYNCFS if each_file else None, each_file
    )
    department = (tmp_path / "docs" / "finance").resolve()
    files = sorted(str(p.resolve()) for p in department.glob("*.pdf"))
    directories = [str(d) for d in (department, department.parent, tmp_path.resolve())]
    assert len(files) == 4
    assert sorted(synced[:4]) == [("fsync", f, 0) for f in files]  # the final files, not temporary ones
    assert synced[4:] == [("fsync", d, 0) for d in directories]


def test_a_failed_sync_of_the_document_volume_fails_the_task_and_records_nothing(
    db, ebox, client, renderer, tmp_path, monkeypatch
):
    import ctypes
    import errno

    seed(db, ebox, 3, active_share=0.5, seed_no=8)
    c = claim(
        db,
        WORK,
        batch_size=1000,
        chunk_size=1000,
        lease=timedelta(hours=3),
    )
    delivery.check_activation(db, WORK, client=client, freshness=timedelta(days=7))
    pipeline.decide_claim(db, WORK, state=read_state(db, "finance"))

    def failing_syncfs(fd):
        ctypes.set_errno(errno.EIO)  # what Linux reports after a failed write-back
        return -1

    monkeypatch.setattr(documents, "SYNCFS", failing_syncfs)
    with pytest.raises(OSError, match="syncfs of the document volume failed"):
        pipeline.render_chunk(
            db,
            WORK.for_chunk(c.chunks[0]),
            renderer=renderer,
            document_root=tmp_path / "docs",
        )
    db.rollback()
    assert db.execute("SELECT count(*) FROM letters WHERE rendered_at IS NOT NULL").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM letter_events WHERE event = 'rendered'").fetchone()[0] == 0
    db.commit()
    monkeypatch.undo()  # the retry renders the chunk again and records it
    assert (
        pipeline.render_chunk(
            db,
            WORK.for_chunk(c.chunks[0]),
            renderer=renderer,
            document_root=tmp_path / "docs",
        )["rendered"]
        == 3
    )
