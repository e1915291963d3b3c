"""Settings: typed parsing of FIELDLAB_* variables, overrides, and per-field documentation."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from app.config import Settings, SettingsError, documented_settings, env_name


def test_defaults_without_environment() -> None:
    assert Settings.from_env({}) == Settings()
    s = Settings()
    assert s.database_url.startswith("sqlite+aiosqlite:///")
    assert s.is_sqlite
    assert (s.port, s.queue_max, s.auto_migrate) == (8000, 10000, True)


def test_env_name() -> None:
    assert env_name("database_url") == "FIELDLAB_DATABASE_URL"
    assert env_name("batch_max_wait_ms") == "FIELDLAB_BATCH_MAX_WAIT_MS"


def test_parses_strings_ints_and_floats() -> None:
    s = Settings.from_env(
        {
            "FIELDLAB_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1/fl",
            "FIELDLAB_PORT": "9001",
            "FIELDLAB_QUEUE_MAX": " 25 ",
            "FIELDLAB_BATCH_MAX_WAIT_MS": "2.5",
            "FIELDLAB_COMMIT_TIMEOUT_S": "1e-1",
            "FIELDLAB_SITE_CACHE_TTL_S": "3",
            "FIELDLAB_LOG_LEVEL": "DEBUG",
            "FIELDLAB_ADMIN_TOKEN": "s3cret",
        }
    )
    assert s.database_url == "postgresql+asyncpg://postgres@127.0.0.1/fl"
    assert not s.is_sqlite
    assert s.port == 9001
    assert type(s.port) is int
    assert s.queue_max == 25
    assert s.batch_max_wait_ms == 2.5
    assert type(s.batch_max_wait_ms) is float
    assert s.commit_timeout_s == pytest.approx(0.1)
    assert s.site_cache_ttl_s == 3.0
    assert type(s.site_cache_ttl_s) is float
    assert (s.log_level, s.admin_token) == ("DEBUG", "s3cret")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("1", True),
        ("on", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_parses_bools(raw: str, value: bool) -> None:
    assert Settings.from_env({"FIELDLAB_AUTO_MIGRATE": raw}).auto_migrate is value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("FIELDLAB_PORT", "eighty"),
        ("FIELDLAB_PORT", "80.5"),
        ("FIELDLAB_PORT", ""),
        ("FIELDLAB_QUEUE_MAX", "1e3"),
        ("FIELDLAB_BATCH_MAX_WAIT_MS", "fast"),
        ("FIELDLAB_COMMIT_TIMEOUT_S", "10s"),
        ("FIELDLAB_AUTO_MIGRATE", "maybe"),
        ("FIELDLAB_AUTO_MIGRATE", "2"),
    ],
)
def test_bad_values_raise_settings_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({name: raw})
    assert name in str(exc.value)
    assert repr(raw) in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_overrides_win_over_environment() -> None:
    env = {"FIELDLAB_PORT": "9001", "FIELDLAB_HOST": "0.0.0.0", "FIELDLAB_WORKERS": "4"}
    s = Settings.from_env(env, port=7000, host="::1")
    assert (s.port, s.host, s.workers) == (7000, "::1", 4)


def test_none_overrides_are_ignored() -> None:
    env = {"FIELDLAB_PORT": "9001"}
    s = Settings.from_env(env, port=None, host=None, workers=None)
    assert (s.port, s.host, s.workers) == (9001, "127.0.0.1", 1)


def test_bad_env_value_is_reported_even_when_overridden() -> None:
    # The environment is parsed before overrides apply: a bad variable is reported even when
    # a flag would override it, so a typo in the environment is never silently masked.
    with pytest.raises(SettingsError, match="FIELDLAB_PORT"):
        Settings.from_env({"FIELDLAB_PORT": "x"}, port=1)


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDLAB_RATE_LIMIT_PER_IP", "7")
    monkeypatch.setenv("FIELDLAB_REDIS_URL", "redis://127.0.0.1:6379/3")
    s = Settings.from_env()
    assert s.rate_limit_per_ip == 7
    assert s.redis_url == "redis://127.0.0.1:6379/3"


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"PORT": "1", "FIELDLAB": "x", "fieldlab_port": "2"}) == Settings()


def test_every_field_is_parseable_from_its_default() -> None:
    """Round trip: each default, written as an env var the way an operator would, parses back."""
    defaults = Settings()
    env = {env_name(f.name): str(getattr(defaults, f.name)) for f in dataclasses.fields(Settings)}
    assert Settings.from_env(env) == defaults


def test_every_field_has_a_doc() -> None:
    fields = dataclasses.fields(Settings)
    assert len(fields) > 20
    for f in fields:
        doc = f.metadata.get("doc")
        assert isinstance(doc, str), f"{f.name} has no doc"
        assert doc.strip(), f"{f.name} has an empty doc"
        assert f.default is not dataclasses.MISSING, f"{f.name} has no default"


def test_every_field_has_a_parseable_type() -> None:
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        assert hints[f.name] in (str, int, float, bool), f"{f.name}: {hints[f.name]}"


def test_documented_settings_lists_every_field() -> None:
    documented = documented_settings()
    assert [name for name, _, _ in documented] == [env_name(f.name) for f in dataclasses.fields(Settings)]
    by_name = {name: (default, doc) for name, default, doc in documented}
    assert by_name["FIELDLAB_PORT"][0] == "8000"
    assert by_name["FIELDLAB_ADMIN_TOKEN"][0] == '""'
    assert by_name["FIELDLAB_AUTO_MIGRATE"][0] == "True"
    assert all(doc for _, doc in by_name.values())


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("FIELDLAB_QUEUE_MAX", "0"),
        ("FIELDLAB_RATE_LIMIT_PER_IP", "-1"),
        ("FIELDLAB_COMMIT_TIMEOUT_S", "nan"),
        ("FIELDLAB_BATCH_MAX_WAIT_MS", "-0.5"),
        ("FIELDLAB_BEACON_MAX_STRING", "5000"),
        ("FIELDLAB_PORT", "70000"),
    ],
)
def test_settings_that_would_disable_a_protection_are_refused(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize("raw", ["0.5", "21", "nan", "fast", "", "auto4"])
def test_the_mobile_cpu_slowdown_must_be_one_lighthouse_takes(raw: str) -> None:
    with pytest.raises(
        SettingsError, match=r"FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN=.* between 1 and 20, or auto"
    ):
        Settings.from_env({"FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN": raw})


@pytest.mark.parametrize("raw", ["auto", "AUTO", " auto "])
def test_an_auto_mobile_cpu_slowdown_calibrates_every_preset_s_audits(raw: str) -> None:
    auto = Settings.from_env({"FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN": raw})
    # Desktop audits apply no slowdown, but they measure the same host for the mobile ones.
    assert auto.lighthouse_cpu_slowdown("mobile") == auto.lighthouse_cpu_slowdown("desktop") == "auto"


def test_the_mobile_cpu_slowdown_applies_to_mobile_audits_only() -> None:
    slower_host = Settings.from_env({"FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN": "2.5"})
    assert slower_host.lighthouse_cpu_slowdown("mobile") == 2.5
    assert slower_host.lighthouse_cpu_slowdown("desktop") is None
    assert Settings().lighthouse_cpu_slowdown("mobile") is None  # Lighthouse's own 4x
    assert (
        Settings.from_env({"FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN": "4.0"}).lighthouse_cpu_slowdown(
            "mobile"
        )
        is None
    )
