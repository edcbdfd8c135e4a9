"""One sample of every letter type in every language, as PDF and PNG, for review by the departments.

    .venv/bin/python -m demo.samples --out var/samples

writes `<out>/<letter_type>_<language>.pdf` and, per page, `<letter_type>_<language>-<page>.png`
(rendered by poppler's `pdftoppm`, Debian package `poppler-utils`), plus `index.txt` listing each
sample with its subject, page count and SHA-256. The letters are made up (demo payloads, a recipient
whose name needs more than ASCII) and dated today unless `--date` says otherwise; the same date gives
the same files. Rerunning overwrites the previous samples. `--templates <folder>` renders from an
edited copy of include/templates/; a mistake in a template is reported (file and field) and nothing is
written.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from demo.sample_payloads import sample_payload
from include.dijlepost import clock
from include.dijlepost.rendering import LetterRenderer, RenderedLetter, TemplateError
from include.dijlepost.settings import TEMPLATES_DIR
from include.dijlepost.waves import ALL_LETTER_TYPES, LANGUAGES

DPI = 150  # enough for the QR code's modules (0.6 mm) to be 3.5 pixels wide
# A few names a Mechelen letter meets, one per language, so reviewers see the accents rendered.
RECIPIENTS = {
    "nl": ("Łukasz Şahin-Öztürk", "Bruul 12 bus 3", "2800", "Mechelen"),
    "fr": ("Françoise Lefèvre-Núñez", "Hoogstraat 45", "2800", "Mechelen"),
    "de": ("Jürgen Weiß", "Keizerstraat 8", "2800", "Mechelen"),
}


@dataclass(frozen=True)
class Sample:
    letter: dict
    rendered: RenderedLetter
    pdf: Path
    pngs: tuple[Path, ...]


def sample_letter(letter_type: str, language: str, today: date, seed: int = 2800) -> dict:
    """A complete outbox row for the sample of this type and language."""
    name, street, postal_code, city = RECIPIENTS[language]
    return {
        "letter_id": f"SAMPLE-{letter_type}-{language}".replace("_", "-"),
        "department": ALL_LETTER_TYPES[letter_type],
        "letter_type": letter_type,
        "recipient_kind": "citizen",
        "recipient_name": name,
        "street": street,
        "postal_code": postal_code,
        "city": city,
        "country": "BE",
        "language": language,
        "registered": letter_type in ("gas_finding", "gas_decision"),
        "payload": sample_payload(letter_type, random.Random(f"{seed}-{letter_type}"), today),
    }


def render_samples(
    out: Path, today: date, *, png: bool = True, templates_dir: Path = TEMPLATES_DIR
) -> list[Sample]:
    if png and shutil.which("pdftoppm") is None:
        raise SystemExit("pdftoppm not found: install Debian's poppler-utils (apt-get install poppler-utils)")
    renderer = LetterRenderer(templates_dir, today=today)
    out.mkdir(parents=True, exist_ok=True)
    samples = []
    for letter_type in sorted(ALL_LETTER_TYPES):
        for language in LANGUAGES:
            letter = sample_letter(letter_type, language, today)
            rendered = renderer.render(letter)
            stem = f"{letter_type}_{language}"
            pdf = out / f"{stem}.pdf"
            pdf.write_bytes(rendered.pdf)
            pngs: tuple[Path, ...] = ()
            if png:
                for old in out.glob(f"{stem}-*.png"):
                    old.unlink()
                subprocess.run(["pdftoppm", "-png", "-r", str(DPI), str(pdf), str(out / stem)], check=True)
                # pdftoppm numbers pages with as many digits as the last page number needs.
                pngs = tuple(sorted(out.glob(f"{stem}-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1])))
                if len(pngs) != rendered.pages:
                    raise RuntimeError(
                        f"pdftoppm made {len(pngs)} images of the {rendered.pages} pages of {pdf}"
                    )
            samples.append(Sample(letter, rendered, pdf, pngs))
    index = [
        f"{s.pdf.name}\t{s.rendered.pages} page(s)\t{s.rendered.sha256}\t{s.rendered.subject}"
        for s in samples
    ]
    (out / "index.txt").write_text("\n".join(index) + "\n", encoding="utf-8")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("var/samples"))
    parser.add_argument("--date", type=date.fromisoformat, default=None, help="letter date, YYYY-MM-DD")
    parser.add_argument("--no-png", action="store_true", help="PDFs only")
    parser.add_argument("--templates", type=Path, default=TEMPLATES_DIR, help="templates folder to try")
    args = parser.parse_args(argv)
    try:
        samples = render_samples(
            args.out, args.date or clock.today(), png=not args.no_png, templates_dir=args.templates
        )
    except TemplateError as exc:
        print(f"The templates have a mistake, no samples written: {exc}", file=sys.stderr)
        return 2
    for sample in samples:
        print(f"{sample.pdf}  {sample.rendered.pages}p  {len(sample.pngs)} png  {sample.rendered.subject}")
    print(f"{len(samples)} samples in {args.out} (index.txt lists them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
