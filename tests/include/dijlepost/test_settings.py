"""Deployment settings from the environment: defaults, and a clear error for a bad value."""

import pytest
from pydantic import ValidationError

from include.dijlepost.settings import ConfigurationError, Settings


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in ("DIJLEPOST_DOCUMENT_SYNC", "DIJLEPOST_DOCUMENT_ROOT", "DIJLEPOST_PRINT_WORK_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DIJLEPOST_PSEUDONYM_KEY", "k" * 32)
    monkeypatch.setenv("DIJLEPOST_VAR_DIR", str(tmp_path))
    return monkeypatch


def test_defaults_put_documents_and_batches_under_the_var_dir_and_sync_the_volume(env, tmp_path):
    settings = Settings.from_env()
    assert settings.document_root == tmp_path / "documents"
    assert settings.print_work_dir == tmp_path / "print-batches"
    assert settings.document_sync == "volume"


def test_documents_can_be_synced_file_by_file(env):
    env.setenv("DIJLEPOST_DOCUMENT_SYNC", "file")
    assert Settings.from_env().document_sync == "file"


@pytest.mark.parametrize("value", ["", "VOLUME", "fsync"])
def test_an_unknown_sync_mode_is_refused_by_name(env, value):
    env.setenv("DIJLEPOST_DOCUMENT_SYNC", value)
    with pytest.raises(ConfigurationError, match="DIJLEPOST_DOCUMENT_SYNC must be 'volume' or 'file'"):
        Settings.from_env()


def test_a_short_pseudonym_key_is_refused(env):
    env.setenv("DIJLEPOST_PSEUDONYM_KEY", "short")
    with pytest.raises(ConfigurationError, match="DIJLEPOST_PSEUDONYM_KEY"):
        Settings.from_env()


def test_a_missing_pseudonym_key_is_refused_by_name_without_a_traceback_of_values(env):
    env.delenv("DIJLEPOST_PSEUDONYM_KEY")
    with pytest.raises(ConfigurationError, match="DIJLEPOST_PSEUDONYM_KEY must be set") as refused:
        Settings.from_env()
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_a_short_key_is_counted_in_characters_and_never_echoed(env):
    env.setenv("DIJLEPOST_PSEUDONYM_KEY", "ééééééééé")  # 9 characters, 18 bytes
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env()
    assert "é" not in str(refused.value)
    env.setenv("DIJLEPOST_PSEUDONYM_KEY", "é" * 16)
    assert Settings.from_env().pseudonym_key == ("é" * 16).encode()


def test_explicit_paths_and_database_url_override_the_var_dir(env, tmp_path):
    env.setenv("DIJLEPOST_DOCUMENT_ROOT", str(tmp_path / "docs"))
    env.setenv("DIJLEPOST_PRINT_WORK_DIR", str(tmp_path / "batches"))
    env.setenv("DIJLEPOST_DATABASE_URL", "postgresql://127.0.0.1/dijlepost")
    settings = Settings.from_env()
    assert (settings.document_root, settings.print_work_dir) == (tmp_path / "docs", tmp_path / "batches")
    assert settings.database_url == "postgresql://127.0.0.1/dijlepost"
    env.setenv("DIJLEPOST_DATABASE_URL", "")
    assert Settings.from_env().database_url is None


def test_settings_cannot_be_changed_after_reading(env):
    settings = Settings.from_env()
    with pytest.raises(ValidationError, match="frozen"):
        settings.document_sync = "file"


def test_the_secrets_have_no_clear_text_repr(env):
    key = "pseudonym-key-0123456789-secret"
    env.setenv("DIJLEPOST_PSEUDONYM_KEY", key)
    env.setenv("DIJLEPOST_DATABASE_URL", "postgresql://airflow_dijlepost:s3cr%40t-pw@db.example/dijlepost")
    settings = Settings.from_env()
    for text in (repr(settings), str(settings), f"{settings!r}"):
        assert key not in text and key.encode().hex() not in text
        assert "s3cr" not in text and "db.example" not in text
    assert settings.pseudonym_key == key.encode()  # the value itself is there for the code that needs it
    assert set(settings.secrets()) >= {key, key.encode().hex(), "s3cr@t-pw", "s3cr%40t-pw"}


def test_the_tasks_settings_register_every_secret_with_airflows_masker(env):
    from airflow.sdk._shared.secrets_masker import redact

    from include.dijlepost.airflow_support import settings

    key = "another-pseudonym-key-4242-secret"
    env.setenv("DIJLEPOST_PSEUDONYM_KEY", key)
    env.setenv("DIJLEPOST_DATABASE_URL", "postgresql://airflow_dijlepost:pw-9f8e7d6c5b@db.example/dijlepost")
    config = settings()
    assert config.pseudonym_key == key.encode()
    line = redact(f"event=debug key={key} hex={key.encode().hex()} url=postgresql://u:pw-9f8e7d6c5b@h/db")
    assert key not in line and key.encode().hex() not in line and "pw-9f8e7d6c5b" not in line
    assert line.count("***") == 3
