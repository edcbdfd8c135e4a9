"""The shared-cores benchmark renders beside a real eBox load, and stops that load when it is done."""

import os
import time

import psutil
import pytest

from benchmarks.shared_cores import EboxLoad, measure, render_beside

pytestmark = pytest.mark.integration


def test_rendering_alone_reports_cpu_per_letter_and_no_load(tmp_path):
    result = measure("alone", processes=1, letters=5, directory=tmp_path)
    assert result["cpu_ms"] > 0
    assert result["load_per_s"] is None


@pytest.mark.parametrize("batch", [False, True])
def test_the_ebox_load_publishes_while_letters_render_and_is_gone_afterwards(tmp_path, batch):
    if batch and not hasattr(os, "SCHED_BATCH"):
        pytest.skip("SCHED_BATCH is Linux only")
    with EboxLoad(tmp_path, batch=batch) as load:
        pids = [p.pid for p in load.procs]
        policy = os.SCHED_BATCH if batch else os.SCHED_OTHER
        threads = [t.id for pid in pids for t in psutil.Process(pid).threads()]
        assert {os.sched_getscheduler(tid) for tid in threads} == {policy}
        first = load.published()
        assert first >= 400
        # a real rendering beside it, and the load keeps publishing meanwhile
        assert render_beside(1, 20)["cpu_ms"] > 0
        deadline = time.monotonic() + 30
        while load.published() == first:  # the counter moves every 200 publications
            assert time.monotonic() < deadline, "the eBox load stopped publishing"
            time.sleep(0.05)
    assert not [
        pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
