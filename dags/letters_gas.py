"""Airflow DAG: Wave 2: municipal administrative sanctions (GAS). Built from `include/dijlepost/waves.py` by `include/dijlepost/dag_factory.py`."""

from include.dijlepost.dag_factory import build_wave_dag
from include.dijlepost.waves import WAVES

dag = build_wave_dag(WAVES["gas"])
