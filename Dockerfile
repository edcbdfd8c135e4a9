# Astronomer Runtime image for dijlepost: Astro Runtime 3.3-2 (Apache Airflow 3.3), the Python 3.11
# distribution that requirements.txt is locked for. The project root is /usr/local/airflow and is on
# PYTHONPATH, so `include.dijlepost` imports work unchanged (tests/dags/test_astro_layout.py).
FROM astrocrpublic.azurecr.io/runtime:3.3-2-python-3.11
