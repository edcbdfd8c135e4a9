"""Run wave DAGs once each with `dag.test()` (in-process, against the real metadata database).

    python -m demo.run_waves [--conf JSON] letters_finance letters_gas ...
Exits non-zero when a DAG run does not end in success. Used by the demo and the end-to-end tests;
the scale benchmark runs the same DAGs through a real scheduler and executor instead.
"""

from __future__ import annotations

import sys


def run(dag_ids: list[str], conf: dict | None = None) -> dict[str, str]:
    import os

    # `dag.test()` runs the DAG unserialized, and Airflow 3.3 then fails the end of a successful run
    # on a Deadline Alert (it looks the alerts up by the ids a serialized DAG has): no deadline here.
    os.environ.setdefault("DIJLEPOST_WAVE_DEADLINE_MINUTES", "off")
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=None)  # the configured dags folder
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    states = {}
    for dag_id in dag_ids:
        dr = bag.dags[dag_id].test(run_conf=conf)
        states[dag_id] = str(getattr(dr, "state", None))
        print(f"dag_run dag_id={dag_id} run_id={dr.run_id} state={states[dag_id]}", flush=True)
    return states


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--conf", type=json.loads, default=None, help='DAG run conf, e.g. {"chunk_size": 100}'
    )
    parser.add_argument("dag_ids", nargs="+")
    args = parser.parse_args()
    result = run(args.dag_ids, args.conf)
    sys.exit(0 if all(s == "success" for s in result.values()) else 1)
