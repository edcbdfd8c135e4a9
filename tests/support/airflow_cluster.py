"""A real Airflow deployment on this machine for the Celery test: `sandboxes.processes.AirflowCluster`
(the demo and the scale benchmark start theirs from there too)."""

from sandboxes.processes import POOLS, REDIS_URL, AirflowCluster, free_port, worker_hostname

__all__ = ["POOLS", "REDIS_URL", "AirflowCluster", "free_port", "worker_hostname"]
