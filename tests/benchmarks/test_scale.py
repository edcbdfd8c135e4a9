"""The scale benchmark's summary over repeated runs."""

from benchmarks.scale import medians


def run(n: int, wall: float, ratio: float) -> dict:
    return {"letters": n, "wall_s": wall, "letters_per_s": round(n / wall, 1), "ratio_e2e_to_bare": ratio}


def test_repeated_runs_are_summed_up_per_n_by_their_median_in_the_order_run():
    results = [
        run(30000, 200.0, 0.47),
        run(30000, 260.0, 0.40),
        run(30000, 210.0, 0.45),
        run(10000, 90.0, 0.34),
        run(10000, 80.0, 0.36),
    ]
    summary = medians(results)
    assert [m["letters"] for m in summary] == [30000, 10000]
    assert summary[0] == {
        "letters": 30000,
        "runs": 3,
        "wall_s": 210.0,
        "letters_per_s": 142.9,
        "ratio_e2e_to_bare": 0.45,
        "ratios": [0.47, 0.40, 0.45],
    }
    assert summary[1]["runs"] == 2 and summary[1]["ratio_e2e_to_bare"] == 0.35  # even count: the mean of two
    assert summary[1]["wall_s"] == 85.0


def test_the_benchmark_airflow_takes_the_production_scheduler_settings():
    import yaml

    from benchmarks.scale import ROOT, production_airflow_settings

    settings = production_airflow_settings()
    deployed = {
        v["key"]: str(v["value"])
        for v in yaml.safe_load((ROOT / "astro-config.yaml").read_text())["deployment"][
            "environment_variables"
        ]
    }
    assert (
        settings["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"]
        == deployed["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"]
    )
    assert (
        settings["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"]
        == deployed["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"]
    )
    assert all(k.startswith(("AIRFLOW__SCHEDULER__", "AIRFLOW__DAG_PROCESSOR__")) for k in settings)
