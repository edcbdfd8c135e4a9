"""The federal eBox channel: client (plain Python), Airflow hook, and a local sandbox."""
