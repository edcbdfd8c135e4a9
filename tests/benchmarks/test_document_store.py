"""The document-store benchmark measures the render task's own write path, and leaves nothing behind."""
from benchmarks.document_store import measure, store_many


def test_it_stores_each_pdf_whole_under_its_name_with_no_temporary_file_left(tmp_path):
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 40
    figures = store_many(tmp_path, pdf, 25)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"L{i:07d}.pdf" for i in range(25)]
    assert all(p.read_bytes() == pdf for p in tmp_path.iterdir())
    assert set(figures) == {"user_ms", "kernel_ms", "wall_ms"}
    assert figures["wall_ms"] > 0 and figures["user_ms"] + figures["kernel_ms"] > 0


def test_a_measurement_cleans_up_what_it_wrote_and_deleted(tmp_path):
    measure(tmp_path, b"%PDF-1.7\n", 10, delete_first=True)
    measure(tmp_path, b"%PDF-1.7\n", 10, delete_first=False)
    assert list(tmp_path.iterdir()) == []
