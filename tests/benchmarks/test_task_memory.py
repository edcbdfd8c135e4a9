"""The scale benchmark's outside measurement of task memory: real processes titled like Airflow's task
processes, their peak resident memory read from /proc while they run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from benchmarks.task_memory import TaskMemory, high_water_mark_kib, peak_by_task, task_instance_of

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")

# A stand-in task process: takes Airflow's title, grows to `mib` MiB of touched memory, frees it and
# goes on a little, so the peak is only visible as the kernel's high-water mark.
TASK = """
import sys, time
from setproctitle import setproctitle
setproctitle("airflow worker -- " + sys.argv[1])
mib = int(sys.argv[2])
block = bytearray(mib * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
time.sleep(0.6)
del block
time.sleep(0.6)
"""


def start_task(ti: str, mib: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TASK, ti, str(mib)])


def test_the_peak_of_each_task_process_is_read_even_after_it_freed_its_memory():
    big, small = str(uuid.uuid4()), str(uuid.uuid4())
    with TaskMemory(roots=[os.getpid()], interval=0.1) as memory:
        tasks = [start_task(big, 300), start_task(small, 20)]
        for p in tasks:
            assert p.wait(timeout=30) == 0
    peaks = memory.peaks_mib
    assert set(peaks) >= {big, small}
    assert 300 <= peaks[big] < 400  # the bytearray plus an interpreter
    assert 20 <= peaks[small] < peaks[big] - 200
    assert memory.samples >= 5


def test_only_descendants_of_the_roots_are_counted():
    ti = str(uuid.uuid4())
    p = start_task(ti, 10)
    try:
        time.sleep(0.3)
        memory = TaskMemory(roots=[p.pid + 10_000_000])  # a root that does not exist
        memory.sample()
        assert ti not in memory.peaks_kib
        everywhere = TaskMemory()  # no roots: every task process on the machine
        everywhere.sample()
        assert ti in everywhere.peaks_kib
    finally:
        p.wait(timeout=30)


def test_proc_readers_on_this_process_and_on_one_that_does_not_exist():
    assert high_water_mark_kib(os.getpid()) > 0
    assert task_instance_of(os.getpid()) is None
    gone = 2**22 + 12345  # above the default pid_max: never a process
    assert high_water_mark_kib(gone) is None and task_instance_of(gone) is None


def test_peaks_are_summed_up_per_task_by_the_largest_instance():
    peaks = {"a1": 120.0, "a2": 180.5, "b1": 90.0, "unknown": 999.0}
    assert peak_by_task(peaks, {"a1": "render", "a2": "render", "b1": "claim"}) == {
        "render": 180.5,
        "claim": 90.0,
    }
