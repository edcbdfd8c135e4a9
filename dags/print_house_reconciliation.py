"""Airflow DAG: daily reconciliation of letters handed to the print house without acknowledgement.
Built by `include/dijlepost/printhouse/dag_builder.py`."""
from include.dijlepost.printhouse.dag_builder import build_reconciliation_dag

dag = build_reconciliation_dag()
