# Astronomer Runtime image for dijlepost (Airflow 3.3). The project root is /usr/local/airflow and is on
# PYTHONPATH, so `include.dijlepost` imports work unchanged; requirements.txt is installed on top.
FROM astrocrpublic.azurecr.io/runtime:3.3-2
