"""Letter rendering throughput: one-page invoices with their EPC QR code, per core, and peak memory.

    .venv/bin/python -m benchmarks.rendering                 # 1,000 and 10,000 letters + naive baseline
    .venv/bin/python -m benchmarks.rendering --sizes 1000 --naive 100
    .venv/bin/python -m benchmarks.rendering --mix           # every template in turn instead of invoices

Every measurement runs in a fresh child process (one core: rendering is single-threaded), so its peak
resident memory (`ru_maxrss`) is its own. Letters/s/core is letters per CPU second of that process
(robust to other load on the machine); the wall-clock rate is printed too. The letters are invoices
(with `--mix`, every letter type in turn) to recipients drawn from the demo population (Flemish, French, Moroccan, Turkish, Polish... names), in
their own language, with a fresh amount and structured communication each. "tree elements" is the
average number of structure elements (/StructElem) of a letter's tagged PDF: what the tree costs is
the rate and PDF size beside it.

The naive baseline is what the issue calls "a naive fpdf2 loop": for every letter a new FPDF, both
DejaVu faces loaded with `add_font` from the full font files, the same page drawn with `text`/`rect`
calls, segno choosing the QR mask, and fpdf2 subsetting the fonts at `output()`. It draws the same
layout (computed by the renderer), so the ratio is the cost of the drawing and embedding strategy.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import time
from datetime import date

TODAY = date(2026, 3, 1)
SEED = 2800


def _letters(count: int, seed: int = SEED, *, mix: bool = False):
    """`count` letters: invoices, or with `mix` every template in turn."""
    from demo.population import make_recipient
    from demo.sample_payloads import sample_payload
    from include.dijlepost.waves import ALL_LETTER_TYPES

    rng = random.Random(seed)
    letter_types = sorted(ALL_LETTER_TYPES) if mix else ["invoice"]
    for index in range(count):
        recipient = make_recipient(rng)
        letter_type = letter_types[index % len(letter_types)]
        yield {
            "letter_id": f"BENCH-{index:06d}",
            "department": ALL_LETTER_TYPES[letter_type],
            "letter_type": letter_type,
            "recipient_kind": recipient.kind,
            "recipient_id": recipient.recipient_id,
            "recipient_name": recipient.name,
            "street": recipient.street,
            "postal_code": recipient.postal_code,
            "city": recipient.city,
            "country": recipient.country,
            "language": recipient.language,
            "registered": False,
            "payload": sample_payload(letter_type, rng, TODAY),
        }


def _naive_pdf(renderer, letter) -> bytes:
    """The same page, drawn the naive way (see the module docstring)."""
    import segno
    from fpdf import FPDF

    from include.dijlepost.rendering.fonts import FAMILY, FONT_FILES
    from include.dijlepost.rendering.layout import PAGE_HEIGHT, PAGE_WIDTH, FrameOp, QrOp, RuleOp, TextOp
    from include.dijlepost.rendering.payment import epc_payload
    from include.dijlepost.rendering.renderer import QR_QUIET_ZONE
    from include.dijlepost.settings import TEMPLATES_DIR

    prepared = renderer._prepare(letter)
    pages = renderer._layout(prepared)
    pdf = FPDF(unit="mm", format=(PAGE_WIDTH, PAGE_HEIGHT))
    pdf.set_auto_page_break(False)
    for style, name in FONT_FILES.items():
        pdf.add_font(FAMILY, style, TEMPLATES_DIR / "fonts" / name)
    pdf.set_title(prepared.subject)
    for ops in pages:
        pdf.add_page()
        for op in ops:
            if isinstance(op, TextOp):
                pdf.set_font(FAMILY, op.style, op.size)
                pdf.set_text_color(90 if op.gray else 0)
                pdf.text(op.x, op.y, op.text)
            elif isinstance(op, RuleOp):
                pdf.line(op.x1, op.y1, op.x2, op.y2)
            elif isinstance(op, FrameOp):
                pdf.rect(op.box.left, op.box.top, op.box.width, op.box.height)
            elif isinstance(op, QrOp):
                sender = renderer._set.sender
                payload = epc_payload(
                    name=sender.account_name,
                    iban=sender.iban.compact,
                    amount=prepared.payment.amount,
                    reference=prepared.payment.ogm,
                )
                matrix = segno.make_qr(payload.encode(), error="m", boost_error=False).matrix
                module = op.box.width / (len(matrix) + 2 * QR_QUIET_ZONE)
                for row_index, row in enumerate(matrix):
                    for col, dark in enumerate(row):
                        if dark:
                            pdf.rect(
                                op.box.left + (QR_QUIET_ZONE + col) * module,
                                op.box.top + (QR_QUIET_ZONE + row_index) * module,
                                module,
                                module,
                                style="F",
                            )
    return bytes(pdf.output())


def _measure(kind: str, count: int, mix: bool, queue) -> None:
    """Child process: render `count` letters and report rate and memory."""
    from include.dijlepost.rendering import LetterRenderer

    renderer = LetterRenderer(today=TODAY)
    letters = list(_letters(count, mix=mix))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    render = renderer.render if kind == "renderer" else (lambda letter: _naive_pdf(renderer, letter))
    total_bytes = pages = elements = 0
    rss_curve = []  # peak RSS after every 1,000 letters: flat once the caches are full
    wall, cpu = time.perf_counter(), time.process_time()
    for number, letter in enumerate(letters, start=1):
        result = render(letter)
        if number % 1000 == 0:
            rss_curve.append(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        if kind == "renderer":
            total_bytes += len(result.pdf)
            pages += result.pages
            elements += result.pdf.count(b"/Type /StructElem")
        else:
            total_bytes += len(result)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    queue.put(
        {
            "kind": kind,
            "letters": count,
            "cpu_s": cpu,
            "wall_s": wall,
            "per_cpu_s": count / cpu,
            "per_wall_s": count / wall,
            "rss_before_mb": rss_before / 1024,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "avg_pdf_kb": total_bytes / count / 1024,
            "multi_page": pages - count if kind == "renderer" else None,
            "elements": elements / count if kind == "renderer" else None,
            "rss_curve": rss_curve,
        }
    )


def run(kind: str, count: int, mix: bool = False) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(kind, count, mix, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


# Peak RSS is measured after the renderer is loaded and the letters are built; "growth" is what
# rendering added on top. It rises while the per-process font caches fill (at most EMBED_CACHE_SIZE
# glyph keys per face) and is flat after that: the RSS curve of the longest run shows it.


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--naive", type=int, default=200, help="letters for the naive baseline (0: skip)")
    parser.add_argument("--mix", action="store_true", help="every template in turn instead of invoices")
    args = parser.parse_args(argv)

    results = [run("renderer", size, args.mix) for size in args.sizes]
    if args.naive:
        results.append(run("naive", args.naive, args.mix))
    print(
        f"{'method':<10} {'letters':>8} {'letters/s/core':>15} {'wall letters/s':>15} "
        f"{'peak RSS MB':>12} {'growth MB':>10} {'avg PDF kB':>11} {'tree elements':>14}"
    )
    for r in results:
        print(
            f"{r['kind']:<10} {r['letters']:>8} {r['per_cpu_s']:>15.1f} {r['per_wall_s']:>15.1f} "
            f"{r['peak_rss_mb']:>12.1f} {r['peak_rss_mb'] - r['rss_before_mb']:>10.1f} "
            f"{r['avg_pdf_kb']:>11.1f} {'' if r['elements'] is None else format(r['elements'], '.1f'):>14}"
        )
    longest = max((r for r in results if r["kind"] == "renderer"), key=lambda r: r["letters"])
    if longest["rss_curve"]:
        print(
            f"peak RSS (MB) after every 1,000 of the {longest['letters']:,} letters: "
            + " ".join(map(str, longest["rss_curve"]))
        )
    if args.naive:
        best = max(r["per_cpu_s"] for r in results if r["kind"] == "renderer")
        print(f"speed-up over the naive loop: {best / results[-1]['per_cpu_s']:.1f}x")


if __name__ == "__main__":
    main()
