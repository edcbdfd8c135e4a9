"""The scale benchmark's CPU accounting: which process is which, and that a busy process is counted."""

import subprocess
import sys
import time

from benchmarks.cpu_accounting import CpuAccounting, role_of


def test_processes_are_told_apart_by_their_title():
    ti = "01a224a0-8ef9-7cb0-85cd-fe517daff840"
    assert role_of(f"airflow worker -- {ti}") == ("task", ti)
    assert role_of("airflow worker -- LocalExecutor: <idle>")[0] == "task supervisor"
    assert role_of("/venv/bin/python -m airflow scheduler --skip-serve-logs")[0] == "scheduler"
    assert role_of("/venv/bin/python -m airflow api-server --port 8080")[0] == "api-server"
    assert role_of("/venv/bin/python -m airflow dag-processor")[0] == "dag-processor"
    assert role_of("/venv/bin/python -m sandboxes.ebox --port 1")[0] == "eBox sandbox"
    assert role_of("/venv/bin/python -m sandboxes.printhouse --dir x")[0] == "print house"
    assert (
        role_of("postgres: 15/main: postgres dijlepost_airflow_1a2b 127.0.0.1(5) idle")[0]
        == "PostgreSQL (Airflow metadata)"
    )
    assert (
        role_of("postgres: 15/main: postgres dijlepost_bench_1a2b 127.0.0.1(5) idle")[0]
        == "PostgreSQL (outbox)"
    )
    assert role_of("postgres: 15/main: walwriter")[0] == "PostgreSQL (server)"
    assert role_of("redis-server 127.0.0.1:6379")[0].startswith("other: redis-server")


def test_a_process_started_during_the_run_is_counted_with_its_cpu_time(tmp_path):
    burner = tmp_path / "dijlepost_cpu_burner.py"
    burner.write_text(
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0:\n    pass\n"
    )
    accounting = CpuAccounting(interval=0.2)
    accounting.start()
    time.sleep(0.3)
    subprocess.run([sys.executable, str(burner)], check=True)
    time.sleep(0.3)
    result = accounting.stop()
    # Born after the first sample, it is counted from its birth; only its last interval may be lost.
    counted = sum(v for role, v in result["by_role_cpu_s"].items() if "dijlepost_cpu_burner" in role)
    assert 0.6 <= counted <= 1.3
    assert result["wall_s"] >= 1.0


def test_the_product_and_the_stand_ins_are_counted_apart():
    from benchmarks.cpu_accounting import product_and_stand_ins

    by_role = {
        "task": 100.0,
        "scheduler": 20.0,
        "PostgreSQL (outbox)": 10.0,
        "eBox sandbox": 30.0,
        "print house": 5.0,
        "other: redis-server": 7.0,
    }
    assert product_and_stand_ins(by_role) == (130.0, 35.0)
