"""Airflow DAG: the print house's acknowledgements and returned mail, every 15 minutes.
Built by `include/dijlepost/printhouse/dag_builder.py`."""
from include.dijlepost.printhouse.dag_builder import build_acknowledgements_dag

dag = build_acknowledgements_dag()
