"""docker-compose.yml and the Dockerfile without docker (it is not installed everywhere the tests run):

* the compose database password travels apart from the URL and the bot URL-encodes it in, so any
  characters work; an empty password or the ``CHANGE_ME`` placeholder is refused with exit 2;
* the Prometheus and Grafana services scrape the bot's metrics port and mount files that exist;
* the Dockerfile installs the pinned dependencies in their own layer before the source is copied,
  and the production image has no editable install and no [dev] tools.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from tradebot.app.settings import load_settings
from tradebot.cli import main

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "p@ss:w/rd#1"
DEV_TOOLS = ("pytest", "ruff", "mypy", "import-linter", "hypothesis")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_") or k == "POSTGRES_PASSWORD"]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def _interpolate(value: str, dotenv: dict[str, str]) -> str:
    # compose's ${NAME}, ${NAME:?message} and ${NAME:-default}, enough for this file
    def one(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        if dotenv.get(name):
            return dotenv[name]
        if op == ":-":
            return arg
        raise AssertionError(f"compose would refuse: {arg or name}")

    return re.sub(r"\$\{(?P<name>\w+)(?:(?P<op>:[?-])(?P<arg>[^}]*))?\}", one, value)


def _service_environment(service: str, dotenv: dict[str, str]) -> dict[str, str]:
    env = _compose()["services"][service]["environment"]
    return {k: _interpolate(str(v), dotenv) for k, v in env.items()}


@pytest.mark.parametrize("service", ["migrate", "bot"])
def test_the_compose_password_is_url_encoded_into_the_database_url(
    monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    env = _service_environment(service, {"POSTGRES_PASSWORD": PASSWORD})
    assert PASSWORD not in env["TRADEBOT_DATABASE_URL"]  # compose cannot encode it: it never pastes it
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    url = make_url(load_settings().database_url.get_secret_value())
    assert (url.drivername, url.username, url.password) == ("postgresql+asyncpg", "tradebot", PASSWORD)
    assert (url.host, url.port, url.database) == ("postgres", 5432, "tradebot")


@pytest.mark.parametrize(
    ("url", "password", "named"),
    [
        (
            "postgresql+asyncpg://tradebot@127.0.0.1:1/tradebot",
            "CHANGE_ME",
            "POSTGRES_PASSWORD is the placeholder",
        ),
        ("postgresql+asyncpg://tradebot@127.0.0.1:1/tradebot", "", "POSTGRES_PASSWORD is empty"),
        ("postgresql+asyncpg://tradebot@127.0.0.1:1/tradebot", "   ", "POSTGRES_PASSWORD is empty"),
        (
            "postgresql+asyncpg://tradebot:CHANGE_ME@127.0.0.1:1/tradebot",
            None,
            "TRADEBOT_DATABASE_URL: the password",
        ),
    ],
)
def test_a_placeholder_or_empty_database_password_is_refused_with_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    password: str | None,
    named: str,
) -> None:
    monkeypatch.setenv("TRADEBOT_DATABASE_URL", url)
    if password is not None:
        monkeypatch.setenv("POSTGRES_PASSWORD", password)
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_a_real_password_in_the_url_and_sqlite_with_the_placeholder_are_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = "postgresql+asyncpg://tradebot:s3cret%40x@db:5432/tradebot"
    monkeypatch.setenv("TRADEBOT_DATABASE_URL", own)
    monkeypatch.setenv("POSTGRES_PASSWORD", "other")
    assert load_settings().database_url.get_secret_value() == own
    # .env.example as copied: a SQLite URL with the placeholder still loads (paper mode needs no database password)
    monkeypatch.setenv("TRADEBOT_DATABASE_URL", "sqlite+aiosqlite:///x.db")
    monkeypatch.setenv("POSTGRES_PASSWORD", "CHANGE_ME")
    assert load_settings().database_url.get_secret_value() == "sqlite+aiosqlite:///x.db"


def test_prometheus_scrapes_the_bots_metrics_port_and_grafana_is_provisioned() -> None:
    services = _compose()["services"]
    bot_env = services["bot"]["environment"]
    assert bot_env["TRADEBOT_METRICS__HOST"] == "0.0.0.0"
    port = int(bot_env["TRADEBOT_METRICS__PORT"])
    assert "TRADEBOT_METRICS__PORT" not in services["migrate"]["environment"]
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"bot:{port}"]
    mounts: dict[str, str] = {}
    for name in ("prometheus", "grafana"):
        assert ":latest" not in services[name]["image"]
        for volume in services[name]["volumes"]:
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (REPO / source).exists(), volume
                mounts[source] = target
    assert mounts["./deploy/prometheus/prometheus.yml"] in " ".join(services["prometheus"]["command"])
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/tradebot.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    source = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


def _stages(dockerfile: str) -> list[list[str]]:
    stages: list[list[str]] = []
    for line in dockerfile.splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages and line.strip() and not line.lstrip().startswith("#"):
            stages[-1].append(line)
    return stages


def test_the_dockerfile_installs_dependencies_in_their_own_layer_before_the_source() -> None:
    stages = _stages((REPO / "Dockerfile").read_text())
    assert len(stages) == 2  # a builder and the production image
    builder = stages[0]
    deps = next(i for i, line in enumerate(builder) if "-c requirements.lock" in line)
    copy_src = next(i for i, line in enumerate(builder) if line.startswith("COPY") and " src " in f"{line} ")
    assert deps < copy_src
    copies_before = [line for line in builder[:deps] if line.startswith("COPY")]
    assert copies_before == ["COPY pyproject.toml requirements.lock ./"]  # a source edit keeps the layer
    assert any("pip install --no-deps ." in line for line in builder[copy_src:])


def test_the_production_image_has_no_editable_install_nor_dev_tools() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    builder, final = _stages(dockerfile)
    for line in builder + final:
        assert not re.search(r"pip install[^\n]*(\s-e\s|--editable|\[dev\])", line), line
        assert "make install" not in line, line  # the Makefile's install is the editable [dev] one
    assert not any("pip install" in line for line in final)  # it copies the built virtualenv only
    assert any(line.startswith("COPY --from=builder /opt/venv") for line in final)
    assert not any(re.match(r"COPY\b.*\bsrc\b", line) for line in final)
    # what the builder installs: [project].dependencies, which names no dev tool
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert not names & set(DEV_TOOLS)
    assert set(DEV_TOOLS) <= {
        re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower() for d in project["optional-dependencies"]["dev"]
    }
