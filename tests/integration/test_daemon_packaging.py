"""Packaging of the daemon: docker-compose.yml validates, the Dockerfile installs exactly like CI, and
.env.example documents every setting."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel

from tradebot.app.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_validates_with_postgres_volume_migration_and_testnet_bot(tmp_path: Path) -> None:
    compose = _compose_command()
    if compose is None:
        pytest.skip(
            "neither `docker compose` nor `docker-compose` is installed: cannot validate the compose file"
        )
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    result = subprocess.run([*compose, "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pgdata:/var/lib/postgresql/data" in out or "target: /var/lib/postgresql/data" in out
    assert "TRADEBOT_MODE: testnet" in out
    assert "condition: service_completed_successfully" in out
    assert "- db\n    - upgrade" in out
    # the password travels apart from the URL (the bot URL-encodes it in): never pasted into it
    assert "postgresql+asyncpg://tradebot@postgres:5432/tradebot" in out
    assert "tradebot:CHANGE_ME@" not in out
    assert "prometheus.yml" in out and "/etc/grafana/provisioning" in out
    # without the password the file refuses to render
    (tmp_path / ".env").write_text("TRADEBOT_LOG_LEVEL=info\n")
    refused = subprocess.run([*compose, "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in refused.stderr + refused.stdout


def test_dockerfile_installs_from_the_lock_ci_uses_and_runs_as_non_root_with_a_healthcheck() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    makefile = (REPO / "Makefile").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    # CI: `make test` installs with the lock as constraints; the image installs with the same lock
    assert "install: $(STAMP)" in makefile
    assert '$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"' in makefile
    assert "test: $(STAMP)" in makefile and "make test" in ci
    assert "pip install -c requirements.lock -r runtime-requirements.txt" in dockerfile
    assert "USER tradebot" in dockerfile
    assert "HEALTHCHECK" in dockerfile and 'CMD ["tradebot", "healthcheck"]' in dockerfile
    assert 'ENTRYPOINT ["tradebot"]' in dockerfile
    froms = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert froms and all(f.startswith("FROM python:3.11.") and "-slim" in f for f in froms)


def _env_names(model: type[BaseModel], prefix: str) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _env_names(annotation, f"{prefix}{name.upper()}__")
        elif name == "postgres_password":
            names.append("POSTGRES_PASSWORD")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_env_example_documents_every_setting_and_loads() -> None:
    text = (REPO / ".env.example").read_text()
    names = _env_names(Settings, "TRADEBOT_")
    assert "TRADEBOT_FEEDS__BINANCE__MAX_LAG_MS" in names and "TRADEBOT_LIVE_API_SECRET" in names
    missing = [n for n in names if f"{n}=" not in text]
    assert missing == []


def test_env_example_is_a_valid_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from tradebot.app.settings import load_settings

    for key in [k for k in os.environ if k.startswith("TRADEBOT_") or k == "POSTGRES_PASSWORD"]:
        monkeypatch.delenv(key)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert (s.mode, s.feeds.binance.max_lag_ms, s.daemon.status_interval_s) == ("paper", 15000, 60.0)
    assert s.postgres_password is not None and s.postgres_password.get_secret_value() == "CHANGE_ME"
    assert s.feeds.deribit.instruments == ("BTC_USDC-PERPETUAL", "ETH_USDC-PERPETUAL", "SOL_USDC-PERPETUAL")


@pytest.mark.parametrize(
    ("age_s", "lag_ms", "extra", "code", "word"),
    [
        (1, 2_000, {}, 0, "healthy:"),
        (600, 2_000, {}, 1, "older than"),
        (1, 900_000, {}, 1, "feed lag above"),
        (1, None, {}, 1, "feed lag above"),
        # before: reconciliation age, a halt and refused orders all passed as healthy
        (1, 2_000, {"reconciliation_age_s": 700}, 1, "last reconciliation older than 660 s"),
        (100, 2_000, {"reconciliation_age_s": 590}, 1, "last reconciliation older than 660 s"),
        (1, 2_000, {"last_reconciliation_ms": None, "reconciliation_age_s": None}, 1, "no reconciliation"),
        (
            1,
            2_000,
            {"trading_state": "halted", "halt_reason": "daily_loss"},
            1,
            "trading halted (daily_loss)",
        ),
        (
            1,
            2_000,
            {"trading_blocked": "balance mismatch USDT"},
            1,
            "trading blocked (balance mismatch USDT)",
        ),
        (
            1,
            2_000,
            {"mode": "paper", "last_reconciliation_ms": None, "reconciliation_age_s": None},
            0,
            "healthy:",
        ),
    ],
)
def test_healthcheck_reports_feed_lag_reconciliation_and_trading_state(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    age_s: int,
    lag_ms: int | None,
    extra: dict[str, object],
    code: int,
    word: str,
) -> None:
    import time

    from tradebot.app.daemon.health import write_health
    from tradebot.cli import main

    path = tmp_path / "health.json"
    report: dict[str, object] = {
        "written_wall_ms": time.time_ns() // 1_000_000 - age_s * 1000,
        "run_id": "r",
        "mode": "testnet",
        "venue": "binance",
        "feed_lag_ms": lag_ms,
        "last_reconciliation_ms": 1_700_000_000_000,
        "reconciliation_age_s": 30.0,
        "reconcile_max_age_s": 660.0,
        "trading_state": "active",
    }
    write_health(path, report | extra)
    assert main(["healthcheck", "--file", str(path)]) == code
    out = capsys.readouterr().out
    assert word in out, out
    if "last_reconciliation_ms" not in extra:
        assert "last reconciliation 1700000000000 ms UTC" in out
    assert main(["healthcheck", "--file", str(tmp_path / "missing.json")]) == 1


def test_the_health_file_is_replaced_without_following_a_planted_symlink(tmp_path: Path) -> None:
    from tradebot.app.daemon.health import write_health

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    state = tmp_path / "state"
    state.mkdir()
    (state / "health.json.tmp").symlink_to(victim)  # the old fixed temporary name
    (state / "health.json").symlink_to(victim)
    write_health(state / "health.json", {"run_id": "r"})
    assert victim.read_text() == "keep me"
    assert not (state / "health.json").is_symlink()
    assert json.loads((state / "health.json").read_text()) == {"run_id": "r"}
    assert sorted(p.name for p in state.iterdir()) == ["health.json", "health.json.tmp"]
