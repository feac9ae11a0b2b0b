"""Settings from SOCIALREC_* variables: a bad value fails at start-up naming what to fix."""

from __future__ import annotations

import pytest

from streams.config import ConfigError, Settings, load_settings

#: Whatever SOCIALREC_* variables the caller's shell has are ignored (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("clean_environment")


def config_error(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> str:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return str(caught.value)


def test_defaults_point_at_the_project_servers() -> None:
    settings = load_settings()
    assert settings.kafka_port == 19092
    assert settings.kafka_controller_port == 19093
    assert settings.redis_port == 16379
    assert settings.topic("events") == "events"


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCIALREC_KAFKA_BOOTSTRAP", "127.0.0.1:29092")
    monkeypatch.setenv("SOCIALREC_TOPIC_PREFIX", "t1.")
    monkeypatch.setenv("SOCIALREC_EVENT_WEIGHTS", "view=2,like=4")
    settings = load_settings()
    assert settings.kafka_port == 29092
    assert settings.topic("events") == "t1.events"
    assert settings.event_weights["view"] == 2.0
    assert settings.event_weights["like"] == 4.0


@pytest.mark.parametrize(
    ("variable", "value", "hint"),
    [
        ("SOCIALREC_TOP_N", "lots", "integer"),
        ("SOCIALREC_TOP_N", "0", "greater than or equal to 1"),
        ("SOCIALREC_KAFKA_CONTROLLER_PORT", "70000", "less than or equal to 65535"),
        ("SOCIALREC_BATCH_MAX", "-5", "greater than or equal to 1"),
        ("SOCIALREC_EVENT_WEIGHTS", "view=1,teleport=2", "teleport"),
        ("SOCIALREC_EVENT_WEIGHTS", "view", "view=1,like=3"),
        ("SOCIALREC_EXCLUDE_SEEN", "perhaps", "boolean"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, hint: str
) -> None:
    message = config_error(monkeypatch, variable, value)
    assert variable in message
    assert hint in message
    assert message.startswith("socialrec: invalid configuration")


@pytest.mark.parametrize(
    ("variable", "value", "hint"),
    [
        ("SOCIALREC_KAFKA_BOOTSTRAP", "no-port-here", "host:port"),
        ("SOCIALREC_REDIS_URL", "http://127.0.0.1:16379", "redis://"),
    ],
)
def test_server_addresses_are_checked_and_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, hint: str
) -> None:
    message = config_error(monkeypatch, variable, value)
    assert variable in message
    assert hint in message


def test_config_error_exits_with_the_message() -> None:
    """ConfigError is a SystemExit, so the CLI exits non-zero printing only the message."""
    with pytest.raises(SystemExit) as caught:
        load_settings(top_n=0)
    assert isinstance(caught.value, ConfigError)
    assert "SOCIALREC_TOP_N" in str(caught.value.code)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.top_n = 3


def test_every_source_is_on_by_default_and_each_can_be_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redis.asyncio as aioredis

    from models.recommend import RecommendParams, Source
    from models.state import StateParams
    from streams.metrics import WorkerMetrics
    from streams.sources.factory import build_sources
    from streams.sources.followees import RedisFollowees

    client = aioredis.Redis()  # never connects: building the sources sends nothing

    def built(settings: Settings) -> dict[Source, object]:
        sources, _ = build_sources(client, settings, StateParams(), WorkerMetrics())
        return {m.source: m for m in sources.models}

    every = built(load_settings())
    assert set(every) == {Source.ITEM_CF, Source.MF, Source.CONTENT, Source.USER_CF,
                          Source.FBT, Source.FOLLOWEES}  # fmt: skip
    followees = every[Source.FOLLOWEES]
    assert isinstance(followees, RedisFollowees)
    assert followees.half_life_s == RecommendParams().social_half_life_s  # social proof's
    monkeypatch.setenv("SOCIALREC_SOURCES", "mf,content,user_cf,fbt")
    assert Source.FOLLOWEES not in built(load_settings())
