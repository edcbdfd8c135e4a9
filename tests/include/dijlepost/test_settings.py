"""Deployment settings from the environment: defaults, and a clear error for a bad value."""
import pytest

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
