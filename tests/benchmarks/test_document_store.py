"""The document-store benchmark measures the render task's own write path, and leaves nothing behind."""

from benchmarks.document_store import measure, store_many


def test_it_stores_each_pdf_whole_under_its_name_with_no_temporary_file_left(tmp_path):
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 40
    figures = store_many(tmp_path, pdf, 25)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"L{i:07d}.pdf" for i in range(25)]
    assert all(p.read_bytes() == pdf for p in tmp_path.iterdir())
    assert set(figures) == {"user_ms", "kernel_ms", "machine_ms", "wall_ms"}
    assert figures["wall_ms"] > 0 and figures["user_ms"] + figures["kernel_ms"] > 0


def test_a_measurement_deletes_what_it_said_and_leaves_its_pdfs_to_the_caller(tmp_path):
    figures, target = measure(tmp_path, b"%PDF-1.7\n", 10, delete_first=True)
    assert list(tmp_path.iterdir()) == [target]  # the files deleted first are gone
    assert len(list(target.iterdir())) == 10 and figures["wall_ms"] > 0


def test_the_earlier_way_with_an_fsync_per_pdf_stores_the_same_files(tmp_path):
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 4
    store_many(tmp_path, pdf, 5, fsync_each=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"L{i:07d}.pdf" for i in range(5)]
    assert all(p.read_bytes() == pdf for p in tmp_path.iterdir())
