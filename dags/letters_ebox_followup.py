"""Airflow DAG: daily eBox read status and one paper copy of an important letter left unread.
Built by `include/dijlepost/ebox_followup.py`; the important letter types are in `waves.py`."""
from include.dijlepost.ebox_followup import build_followup_dag

dag = build_followup_dag()
