"""The paper path: print batches and their delivery to the print house over SFTP."""


def sftp_connection(
    host: str,
    port: int,
    login: str,
    key_file: str,
    host_key: str,
    inbox_dir: str = "inbox",
    outbox_dir: str = "outbox",
    printed_dir: str = "printed",
) -> dict:
    """The `printhouse_sftp` Connection in the JSON form of `AIRFLOW_CONN_PRINTHOUSE_SFTP`:
    key authentication and a pinned host key, never host key checking switched off."""
    return {
        "conn_type": "sftp",
        "host": host,
        "port": port,
        "login": login,
        "extra": {
            "key_file": key_file,
            "host_key": host_key,
            "no_host_key_check": False,
            "inbox_dir": inbox_dir,
            "outbox_dir": outbox_dir,
            "printed_dir": printed_dir,
        },
    }
