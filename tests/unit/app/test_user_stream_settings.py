"""``TRADEBOT_DAEMON__USER_STREAM``: on by default, a boolean, refused with its name otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tradebot.app.settings import load_settings
from tradebot.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_the_user_stream_is_on_by_default_and_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().daemon.user_stream is True
    monkeypatch.setenv("TRADEBOT_DAEMON__USER_STREAM", "false")
    assert load_settings().daemon.user_stream is False


def test_a_value_that_is_no_boolean_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_DAEMON__USER_STREAM", "sometimes")
    with pytest.raises(
        ConfigError, match=r"daemon\.user_stream: Input should be a valid boolean.*'sometimes'"
    ):
        load_settings()
