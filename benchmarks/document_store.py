"""What storing one rendered PDF costs on a volume: the render task's own write path, per PDF.

    .venv/bin/python -m benchmarks.document_store [--dir var/bench/docstore] [--letters 3000]

`chunk.render_letters` stores every PDF with `documents.write_atomically` (a new temporary file,
write, rename onto the letter's path) and then makes the chunk durable with one `syncfs` of the
document volume (`documents.VolumeSync`), so each letter creates one new file on the document
volume. This measures that path on the volume holding `--dir` (point it at the production document
volume to size it), in CPU milliseconds per PDF, user and kernel of this process, the whole
machine's busy CPU (the write-back is partly done by kernel threads) and wall time, three ways:

1. into a fresh directory on a quiet volume; then the same with an fsync per PDF
   (`DIJLEPOST_DOCUMENT_SYNC=file`, the render task's only way until 29 Nov);
2. the same right after `--letters` files were deleted next to it (a rerun that cleared its work
   directory first, a test suite cleaning up after itself);
3. on tmpfs (/dev/shm) when it exists: the same code with no disk file system under it.

Why: the render tasks of `benchmarks/scale.py` need more CPU per letter than the bare rendering
loop, and on this development machine most of the difference is kernel time of this write path
(`benchmarks/render_chunk.py`). Its ext4 volume is mounted without a journal, and then creating a
file right after many deletions is much dearer than on a quiet volume: ext4 will not reuse an inode
freed in the last minute (six while the inode's block is not yet written back), and checks each such
inode, one by one, on every file it creates (`recently_deleted` in `find_inode_bit`). The PDF bytes
are one real rendered letter.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.cpu_accounting import ProcessClock
from include.dijlepost.documents import VolumeSync, write_atomically

ROOT = Path(__file__).resolve().parents[1]


def sample_pdf() -> bytes:
    from demo.samples import sample_letter
    from include.dijlepost.rendering import LetterRenderer

    return LetterRenderer().render(sample_letter("invoice", "nl", date(2026, 3, 2))).pdf


def store_many(directory: Path, pdf: bytes, count: int, fsync_each: bool = False) -> dict[str, float]:
    """Store `count` PDFs into `directory` exactly as the render task does: one syncfs, or with
    `fsync_each` an fsync per PDF (DIJLEPOST_DOCUMENT_SYNC=file); ms per PDF."""
    clock = ProcessClock()
    volume = VolumeSync(directory, each_file=fsync_each)
    try:
        paths = [directory / f"L{i:07d}.pdf" for i in range(count)]
        for path in paths:
            write_atomically(path, pdf, sync=False)
        volume.sync(paths)
    finally:
        volume.close()
    return clock.per(count)


def measure(
    base: Path, pdf: bytes, count: int, delete_first: bool, fsync_each: bool = False
) -> tuple[dict[str, float], Path]:
    """Store `count` PDFs into a fresh directory under `base` (first deleting `count` files next to it
    when `delete_first`). Returns the figures and the directory written, for the caller to remove once
    every measurement is done: removing it here would be deletions weighing on the next measurement."""
    base.mkdir(parents=True, exist_ok=True)
    if delete_first:
        doomed = Path(tempfile.mkdtemp(dir=base, prefix="deleted-"))
        for i in range(count):
            (doomed / f"D{i:07d}").write_bytes(b"x")
        os.sync()  # the deletions below are then the only fresh ones
        shutil.rmtree(doomed)
    target = Path(tempfile.mkdtemp(dir=base, prefix="store-"))
    return store_many(target, pdf, count, fsync_each), target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=ROOT / "var" / "bench" / "docstore",
        help="a directory on the volume to measure (created; its contents are removed)",
    )
    parser.add_argument("--letters", type=int, default=3000)
    parser.add_argument(
        "--quiet-seconds",
        type=float,
        default=90,
        help="wait this long before the quiet measurement, so that earlier deletions age out",
    )
    args = parser.parse_args(argv)
    pdf = sample_pdf()
    print(
        f"storing {args.letters} PDFs of {len(pdf)} bytes each, as chunk.render_letters does "
        f"(new temporary file, write, rename; one syncfs at the end)"
    )
    if args.quiet_seconds:
        time.sleep(args.quiet_seconds)
    cases = [
        ("quiet volume", args.dir, False, False),
        ("quiet volume, DIJLEPOST_DOCUMENT_SYNC=file", args.dir, False, True),
        (f"right after deleting {args.letters} files", args.dir, True, False),
    ]
    if Path("/dev/shm").is_dir():
        cases.append(("tmpfs (/dev/shm)", Path("/dev/shm") / "dijlepost-docstore", False, False))
    rows, written = [], []
    try:
        for name, base, delete_first, fsync_each in cases:
            figures, target = measure(base, pdf, args.letters, delete_first, fsync_each)
            rows.append((name, figures))
            written.append(target)
    finally:
        for target in written:
            shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(Path("/dev/shm") / "dijlepost-docstore", ignore_errors=True)
    print(f"{'where':<42}{'user ms':>9}{'kernel ms':>11}{'machine ms':>12}{'wall ms':>9}   per PDF")
    for name, r in rows:
        print(
            f"{name:<42}{r['user_ms']:>9.3f}{r['kernel_ms']:>11.3f}{r['machine_ms']:>12.3f}{r['wall_ms']:>9.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
