"""The render task's own cost beside bare rendering: `pipeline.render_chunk` against the bare loop.

    .venv/bin/python -m benchmarks.render_chunk [--letters 3000] [--documents DIR]

One process, one core, nothing else running: a scratch outbox database with `--letters` letters of
the demo generator (the scale benchmark's mix), claimed into one chunk and decided; then the same
letters rendered twice by one warmed-up `LetterRenderer`:

1. the bare loop: `renderer.render(letter)` for each letter, nothing stored (after one unmeasured pass
   over the same letters, so that the per-process caches are warm for both measurements);
2. `pipeline.render_chunk`, as `chunk.render_letters` runs it: reading the chunk page by page,
   rendering, storing each PDF (temporary file, write, rename), one syncfs of the volume, syncing
   the directory, recording every rendering and its audit event.

Prints CPU milliseconds per letter (user and kernel of this process; the whole machine's busy CPU,
which also counts the kernel threads writing the PDFs back) and wall time of both. The difference
is what the task adds to rendering by itself; what the scale benchmark's render tasks cost beyond
that is the price of sharing the cores (`benchmarks/shared_cores.py`). `--documents` puts the PDFs
on another volume (e.g. /dev/shm, to take the file system out of it).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import psycopg

from benchmarks.cpu_accounting import ProcessClock
from benchmarks.scale import copy_letters, mix_for
from benchmarks.scratch_db import scratch_database
from demo import dataset
from include.dijlepost import clock, pipeline
from include.dijlepost.outbox import RunContext, iter_letters_in_claim
from include.dijlepost.waves import WAVES
from include.dijlepost.work import ChunkWork

ROOT = Path(__file__).resolve().parents[1]
RUN = "benchmark:render_chunk"
CTX = RunContext(
    dag_id="benchmark", run_id="render_chunk", task_id="chunk.render_letters", map_index=0, try_number=1
)
WORK = ChunkWork(ctx=CTX, claim_id=RUN, wave=WAVES["finance"], pseudonym_key=b"benchmark-key", chunk=0)


def seed_and_decide(conn, n: int) -> None:
    """n letters, held by one run as one chunk and routed to paper (claim and routing are not measured
    here: only their outcome is set)."""
    data = dataset.build(
        seed=2811, mix=mix_for(n), today=clock.today(), prefix="R", ebox_share=0.5, mistakes=False
    )
    copy_letters(conn, data.letters)
    conn.execute(
        "UPDATE letters SET status = 'processing', claim_run_id = %s, claim_chunk = 0, "
        "channel = 'paper', decision_rule = 'benchmark', decided_at = now()",
        (RUN,),
    )
    conn.commit()


def measure(n: int, documents: Path) -> dict[str, dict[str, float]]:
    from include.dijlepost.rendering import LetterRenderer

    with scratch_database("dijlepost_bench_render") as url, psycopg.connect(url) as conn:
        seed_and_decide(conn, n)
        renderer = LetterRenderer()
        letters = list(iter_letters_in_claim(conn, RUN, 0))
        for letter in letters:  # warm up on all of them first: fonts, templates and the embedded
            renderer.render(letter)  # font subsets they need, so that neither measurement pays for it
        clock = ProcessClock()
        for letter in letters:
            renderer.render(letter)
        bare = clock.per(len(letters))
        del letters
        target = Path(tempfile.mkdtemp(dir=documents, prefix="render-chunk-"))
        try:
            clock = ProcessClock()
            result = pipeline.render_chunk(conn, WORK, renderer=renderer, document_root=target)
            task = clock.per(n)
        finally:
            shutil.rmtree(target, ignore_errors=True)
        if result["rendered"] != n:
            raise SystemExit(f"render_chunk rendered {result['rendered']} of {n} letters: {result}")
    return {"bare loop": bare, "render_chunk": task}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=3000)
    parser.add_argument(
        "--documents",
        type=Path,
        default=ROOT / "var" / "bench" / "render-chunk",
        help="where the PDFs go (a temporary directory under it, removed afterwards)",
    )
    args = parser.parse_args(argv)
    args.documents.mkdir(parents=True, exist_ok=True)
    rows = measure(args.letters, args.documents)
    print(f"{args.letters} letters, one process, PDFs under {args.documents}")
    print(
        f"{'':<16}{'user ms':>9}{'kernel ms':>11}{'CPU ms':>8}{'machine ms':>12}{'wall ms':>9}   per letter"
    )
    for name, r in rows.items():
        print(
            f"{name:<16}{r['user_ms']:>9.3f}{r['kernel_ms']:>11.3f}{r['user_ms'] + r['kernel_ms']:>8.3f}"
            f"{r['machine_ms']:>12.3f}{r['wall_ms']:>9.3f}"
        )
    bare, task = (rows[k]["user_ms"] + rows[k]["kernel_ms"] for k in ("bare loop", "render_chunk"))
    print(
        f"the task's own cost beside rendering: {task - bare:+.3f} ms CPU per letter ({task / bare - 1:+.1%})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
