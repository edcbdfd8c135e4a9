"""Airflow DAG: daily rollout evaluation per department, with a weekly summary on Mondays.
Built by `include/dijlepost/evaluation.py`; figures in `evaluation_figures`, reports under DIJLEPOST_REPORTS_DIR."""
from include.dijlepost.evaluation import build_evaluation_dag

dag = build_evaluation_dag()
