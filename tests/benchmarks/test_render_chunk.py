"""The render-task benchmark renders every letter both ways and leaves no PDF behind."""

import pytest

from benchmarks.render_chunk import measure

pytestmark = pytest.mark.integration


def test_both_ways_render_every_letter_and_the_pdfs_are_removed(tmp_path):
    rows = measure(12, tmp_path)  # raises SystemExit if render_chunk rendered fewer than 12
    assert set(rows) == {"bare loop", "render_chunk"}
    assert all(r["user_ms"] > 0 and r["wall_ms"] > 0 for r in rows.values())
    assert list(tmp_path.iterdir()) == []
