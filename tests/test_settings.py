"""Settings: one table that parses and documents every variable, resolved once per process."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import settings
from lab.settings import SETTINGS, SettingError, load_settings, reset_settings


@pytest.fixture(autouse=True)
def _fresh() -> None:
    reset_settings()


def test_resolved_once_until_a_variable_changes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reads: list[Path] = []
    real = Path.read_text

    def counting(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "secret_key":
            reads.append(self)
        return real(self, *args, **kwargs)

    first = load_settings()  # writes the secret file
    monkeypatch.setattr(Path, "read_text", counting)
    assert all(load_settings() is first for _ in range(100))
    assert reads == []  # every cookie check asks for the settings; none re-reads the secret
    monkeypatch.setenv("LAB_PUBLIC_URL", "https://lab.example/")
    changed = load_settings()
    assert changed is not first and changed.public_url == "https://lab.example"
    assert changed.secret_key == first.secret_key and len(reads) == 1


def test_env_file_is_read_once_and_reset_reads_it_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = tmp_path / "lab.env"
    env.write_text("LAB_DEBUG=1\n")
    monkeypatch.setenv("LAB_ENV_FILE", str(env))
    # Recorded first, so the variable the .env files set below is removed afterwards, not restored to "1".
    monkeypatch.setenv("LAB_DEBUG", "")
    monkeypatch.delenv("LAB_DEBUG")
    assert load_settings().debug is True
    monkeypatch.delenv("LAB_DEBUG")
    env.write_text("LAB_DEBUG=0\n")
    assert load_settings().debug is False  # the variable is gone and the file is not read again
    reset_settings()
    monkeypatch.delenv("LAB_DEBUG", raising=False)
    assert load_settings().debug is False
    env.write_text("LAB_DEBUG=yes\n")
    monkeypatch.delenv("LAB_DEBUG")  # .env never overrides a variable already set
    reset_settings()
    assert load_settings().debug is True


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "LAB_LOCAL_THREADS",
        "LAB_LOCAL_EXTRA_BUFFERS",
        "LAB_DEBUG",
        "LAB_PASSWORD",
        "LAB_PUBLIC_URL",
        "LAB_MAX_MESSAGE_CHARS",
    ):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert (s.local_threads, s.local_extra_buffers, s.debug, s.password) == (None, False, False, None)
    assert s.public_url == "http://localhost:8501" and s.max_message_chars == 4000
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("data/lab.db")
    assert "secret_key" not in repr(s) and s.secret_key not in repr(s)


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("LAB_LOCAL_THREADS", "3", "local_threads", 3),
        ("LAB_LOCAL_EXTRA_BUFFERS", "1", "local_extra_buffers", True),
        ("LAB_LOCAL_EXTRA_BUFFERS", "0", "local_extra_buffers", False),
        ("LAB_DEBUG", "true", "debug", True),
        ("LAB_MAX_MESSAGE_CHARS", "2000", "max_message_chars", 2000),
        ("LAB_PASSWORD", "pelican orbit lantern", "password", "pelican orbit lantern"),
        ("LAB_DATA_DIR", "/tmp/elsewhere", "data_dir", Path("/tmp/elsewhere")),
    ],
)
def test_each_variable_fills_its_field(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, attribute: str, expected: object
) -> None:
    monkeypatch.setenv(name, value)
    monkeypatch.setenv("LAB_SECRET_KEY", "fixed")  # so LAB_DATA_DIR need not be writable
    assert getattr(load_settings(), attribute) == expected
    assert SETTINGS[name].attribute == attribute


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("LAB_LOCAL_THREADS", "many", "LAB_LOCAL_THREADS: expected a whole number, got 'many'"),
        ("LAB_LOCAL_THREADS", "0", "LAB_LOCAL_THREADS: must be at least 1, got 0"),
        ("LAB_MAX_MESSAGE_CHARS", "lots", "LAB_MAX_MESSAGE_CHARS: expected a whole number"),
        ("LAB_DEBUG", "perhaps", "LAB_DEBUG: expected 1 or 0"),
        ("LAB_PUBLIC_URL", "lab.example", "LAB_PUBLIC_URL: expected an http:// or https:// address"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError) as e:
        load_settings()
    assert str(e.value).startswith(says)


def test_database_url_the_lab_cannot_use_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli import main

    monkeypatch.setenv("DATABASE_URL", "bogus://x")
    assert main(["study", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: DATABASE_URL: 'bogus://x' is not a database URL") and err.count("\n") == 1


def test_missing_env_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A .env named by LAB_ENV_FILE that is not there would leave its settings unset without a word."""
    monkeypatch.setenv("LAB_ENV_FILE", str(tmp_path / "missing.env"))
    with pytest.raises(SettingError, match="LAB_ENV_FILE: '.*missing.env' does not exist"):
        load_settings()


def test_cli_reports_a_bad_setting_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    monkeypatch.setenv("LAB_LOCAL_THREADS", "many")
    assert main(["study", "list"]) == 1
    assert capsys.readouterr().err == "error: LAB_LOCAL_THREADS: expected a whole number, got 'many'\n"


def test_lab_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    assert main(["migrate"]) == 0
    monkeypatch.setenv("LAB_DEBUG", "1")
    assert main(["study", "open", "nope"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "error: no study with slug 'nope'" in err.splitlines()[-1]
    monkeypatch.setenv("LAB_DEBUG", "0")
    assert main(["study", "open", "nope"]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_local_model_threads_follow_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.llm import _local

    monkeypatch.setenv("LAB_LOCAL_THREADS", "5")
    assert _local.default_threads() == 5
    monkeypatch.delenv("LAB_LOCAL_THREADS")
    assert 1 <= _local.default_threads() <= 2


def test_litellm_price_map_stays_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITELLM_LOCAL_MODEL_COST_MAP", raising=False)
    load_settings()
    import os

    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert settings.SETTINGS["LITELLM_LOCAL_MODEL_COST_MAP"].attribute is None
