"""Peak memory of Airflow task processes, measured from outside while a run goes (Linux /proc).

Airflow's task runner renames each task process `airflow worker -- <task instance id>`
(`cpu_accounting.TASK_TITLE`). `TaskMemory` is a thread that, every `interval`, reads the kernel's
high-water mark of resident memory (`VmHWM` in /proc/<pid>/status: the largest RSS the process ever
had, kept by the kernel, so a peak between two samples is not missed) of every such process, and keeps
the largest value seen per task instance. Only a process that lives shorter than one interval can be
missed, and a process that grows after the last sample before it exits loses that growth: at the
default 0.2 s both are rare for tasks that run for seconds. Nothing in the DAGs or the tasks takes
part: the product carries no benchmark code.

    with TaskMemory(roots=[worker.pid for worker in celery_workers]) as memory:
        ... run the waves ...
    peak_by_task(memory.peaks_mib, {ti_id: task_id, ...})    # {task_id: MiB}

`roots` limits the count to descendants of those processes (the benchmark's own Celery workers), so
other work on a shared machine is not counted; without roots every task process on the machine is.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

from benchmarks.cpu_accounting import TASK_TITLE

PROC = Path("/proc")


def high_water_mark_kib(pid: int, proc: Path = PROC) -> int | None:
    """The process's peak resident set size in KiB (`VmHWM`), or None when it is gone or unreadable."""
    try:
        with open(proc / str(pid) / "status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def task_instance_of(pid: int, proc: Path = PROC) -> str | None:
    """The task instance id in a process's title, if it is an Airflow task process."""
    try:
        title = (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    m = TASK_TITLE.search(title)
    return m.group(1) if m else None


class TaskMemory(threading.Thread):
    """Samples the peak RSS of task processes until `stop()`; `peaks_mib` is {task instance id: MiB}."""

    def __init__(
        self, roots: Iterable[int] | Callable[[], Iterable[int]] | None = None, interval: float = 0.2
    ) -> None:
        super().__init__(daemon=True, name="task-memory")
        self.interval = interval
        self._roots = roots
        self.peaks_kib: dict[str, int] = {}
        self.samples = 0
        self._halt = threading.Event()

    def _candidates(self) -> Iterable[int]:
        if self._roots is None:
            return (int(p.name) for p in PROC.iterdir() if p.name.isascii() and p.name.isdigit())
        roots = self._roots() if callable(self._roots) else self._roots
        pids: set[int] = set()
        for root in roots:
            try:
                pids.update(child.pid for child in psutil.Process(root).children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return pids

    def sample(self) -> None:
        me = os.getpid()
        for pid in self._candidates():
            if pid == me:
                continue
            ti = task_instance_of(pid)
            if ti is None:
                continue
            hwm = high_water_mark_kib(pid)
            if hwm is not None and hwm > self.peaks_kib.get(ti, 0):
                self.peaks_kib[ti] = hwm
        self.samples += 1

    def run(self) -> None:
        self.sample()
        while not self._halt.wait(self.interval):
            self.sample()
        self.sample()

    def stop(self) -> dict[str, float]:
        self._halt.set()
        if self.is_alive():
            self.join()
        return self.peaks_mib

    @property
    def peaks_mib(self) -> dict[str, float]:
        return {ti: round(kib / 1024, 1) for ti, kib in self.peaks_kib.items()}

    def __enter__(self) -> TaskMemory:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def peak_by_task(peaks_mib: dict[str, float], task_of: dict[str, str]) -> dict[str, float]:
    """The largest peak per task id, from peaks per task instance id and {task instance id: task id}
    (Airflow's `task_instance.id` and `task_instance_history.task_instance_id`)."""
    out: dict[str, float] = {}
    for ti, mib in peaks_mib.items():
        task = task_of.get(ti)
        if task is not None and mib > out.get(task, 0.0):
            out[task] = mib
    return out
