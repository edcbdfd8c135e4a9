"""Airflow DAG: Wave 3: Economy and Housing. Built from `include/dijlepost/waves.py` by `include/dijlepost/dag_factory.py`."""

from include.dijlepost.dag_factory import build_wave_dag
from include.dijlepost.waves import WAVES

dag = build_wave_dag(WAVES["economy_housing"])
