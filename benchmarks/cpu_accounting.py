"""Where the cores went: CPU seconds of every process on the machine, by role, sampled while a run goes.

A wave on a small machine is CPU-bound, and the task processes share the cores with Airflow's own
services, PostgreSQL, the eBox sandbox and the print house. `CpuAccounting` samples every process's
user + system CPU time (psutil) once per `interval` and adds up what each consumed in between, by role
(from the process title: Airflow sets `airflow worker -- <task instance id>` on task processes).
Task processes are also kept by task instance id, so the benchmark can say how many CPU seconds each
task spent against its wall time. A process that ends between two samples loses at most its last
interval; the figures are a lower bound that accounts for nearly all the time at interval 0.5 s.
"""

from __future__ import annotations

import os
import re
import resource
import threading
import time
from collections import defaultdict

import psutil

TASK_TITLE = re.compile(r"airflow worker -- ([0-9a-f-]{36})")
ROLES = (
    ("task", TASK_TITLE),
    ("task supervisor", re.compile(r"airflow supervisor|LocalExecutor|airflow worker --")),
    ("scheduler", re.compile(r"airflow scheduler")),
    ("api-server", re.compile(r"api[-_]server|uvicorn|gunicorn")),
    ("dag-processor", re.compile(r"dag[-_]processor")),
    ("eBox sandbox", re.compile(r"sandboxes\.ebox")),
    ("print house", re.compile(r"sandboxes\.printhouse|sshd")),
    ("PostgreSQL", re.compile(r"^postgres")),
)


# What runs elsewhere in production (the federal eBox, the print house's server): their CPU is the
# benchmark's, not the product's. Everything else (tasks and their supervisors, scheduler, dag-processor,
# api-server, PostgreSQL) is the product's own.
STAND_IN_ROLES = frozenset({"eBox sandbox", "print house"})


def product_and_stand_ins(by_role_cpu_s: dict[str, float]) -> tuple[float, float]:
    """(the product's CPU seconds, the stand-ins') from a by-role table; other processes on the machine
    count in neither."""
    product = sum(
        s for role, s in by_role_cpu_s.items() if role not in STAND_IN_ROLES and not role.startswith("other")
    )
    stand_ins = sum(s for role, s in by_role_cpu_s.items() if role in STAND_IN_ROLES)
    return round(product, 1), round(stand_ins, 1)


PG_BACKEND = re.compile(r"^postgres: (?:\S+: )?\S+ (\S+) \S+\(")


def role_of(title: str) -> tuple[str, str | None]:
    for role, pattern in ROLES:
        m = pattern.search(title)
        if m:
            if role == "PostgreSQL":
                backend = PG_BACKEND.match(title)
                db = backend.group(1) if backend else ""
                role = (
                    "PostgreSQL (Airflow metadata)"
                    if "airflow" in db
                    else "PostgreSQL (outbox)"
                    if db.startswith("dijlepost")
                    else "PostgreSQL (server)"
                )
            return role, (m.group(1) if role == "task" else None)
    return "other: " + " ".join(os.path.basename(word) for word in title.split()[:6])[:80], None


class CpuAccounting(threading.Thread):
    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True, name="cpu-accounting")
        self.interval = interval
        self.by_role: dict[str, float] = defaultdict(float)
        self.by_task_instance: dict[str, float] = defaultdict(float)
        self._last: dict[tuple[int, float], float] = {}  # (pid, birth) -> CPU seconds at the last sample
        self._halt = threading.Event()
        self.started_at = self.ended_at = None
        self._me = os.getpid()

    def _sample(self) -> None:
        seen = set()
        for p in psutil.process_iter(["pid", "create_time", "cmdline", "name"]):
            try:
                key = (p.info["pid"], p.info["create_time"])
                if p.info["pid"] == self._me:
                    continue
                t = p.cpu_times()
                used = t.user + t.system
                prev = self._last.get(key)
                title = " ".join(p.info["cmdline"] or []) or (p.info["name"] or "")
                # by its current title: a forked task process counts as its supervisor until it is renamed
                role, ti = role_of(title)
                if prev is not None:
                    delta = used - prev
                    self.by_role[role] += delta
                    if ti:
                        self.by_task_instance[ti] += delta
                elif self.started_at is not None and p.info["create_time"] >= self.started_at - 1:
                    self.by_role[role] += used  # born since the start: all its time counts
                    if ti:
                        self.by_task_instance[ti] += used
                self._last[key] = used
                seen.add(key)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        for key in set(self._last) - seen:
            del self._last[key]

    def run(self) -> None:
        self._sample()
        self.started_at = time.time()
        self._machine_start = psutil.cpu_times()
        while not self._halt.wait(self.interval):
            self._sample()
        self._sample()
        self.ended_at = time.time()
        self._machine_end = psutil.cpu_times()

    def stop(self) -> dict:
        self._halt.set()
        self.join()
        wall = (self.ended_at or time.time()) - (self.started_at or time.time())
        # The kernel's own account of the whole machine over the same span (what per-process sampling
        # misses: processes that lived between two samples, and time the hypervisor took: steal).
        machine = {
            f: round(getattr(self._machine_end, f) - getattr(self._machine_start, f), 1)
            for f in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
            if hasattr(self._machine_end, f)
        }
        return {
            "wall_s": round(wall, 1),
            "cores": psutil.cpu_count(),
            "machine_cpu_s": machine,
            "by_role_cpu_s": {
                k: round(v, 1)
                for k, v in sorted(self.by_role.items(), key=lambda kv: -kv[1])
                if v >= 0.5 or not k.startswith("other")
            },
            "by_task_instance_cpu_s": dict(self.by_task_instance),
        }


class ProcessClock:
    """This process's user and kernel CPU time (all its threads), the whole machine's busy CPU time and
    the wall time since it was made, per item: `ProcessClock()`, do the work, then `.per(items)` in
    milliseconds. `machine_ms` also counts what kernel threads did on the process's behalf (the write-back
    of its files, for one), which the process's own clock does not; it means something only on a
    machine with nothing else running."""

    def __init__(self) -> None:
        self.start = self._now()

    @staticmethod
    def _now() -> tuple[float, float, float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        machine = psutil.cpu_times()
        busy = sum(
            getattr(machine, f)
            for f in machine._fields
            if f not in ("idle", "iowait", "steal", "guest", "guest_nice")
        )
        return usage.ru_utime, usage.ru_stime, busy, time.perf_counter()

    def per(self, items: int) -> dict[str, float]:
        (u0, s0, m0, t0), (u1, s1, m1, t1) = self.start, self._now()
        return {
            "user_ms": (u1 - u0) / items * 1e3,
            "kernel_ms": (s1 - s0) / items * 1e3,
            "machine_ms": (m1 - m0) / items * 1e3,
            "wall_ms": (t1 - t0) / items * 1e3,
        }
