"""Rollout administration: figures for the admin page and CLI, and the FastAPI app (`app.py`) that the
Airflow plugin `plugins/dijlepost_admin.py` mounts in the API server. Importing this package does not
import FastAPI or Airflow."""
