"""A daemon that cannot reach its venue at start says which host, why, and what to check.

Before: paper mode without network died with ``error: VenueUnavailable: binance GET
https://api.binance.com/api/v3/exchangeInfo`` (no cause, no hint), as a plain line in a JSON log.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

TRADEBOT = str(Path(sys.executable).parent / "tradebot")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the socket is: connections are refused


def test_an_unreachable_venue_at_start_names_host_cause_and_what_to_check(tmp_path: Path) -> None:
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env |= {
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "TRADEBOT_MODE": "paper",
        "TRADEBOT_FEEDS__BINANCE__REST_URL": f"http://127.0.0.1:{port}",
    }
    done = subprocess.run(
        [TRADEBOT, "run", "--migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]  # all JSON
    last = lines[-1]
    assert last["event"] == "command_failed" and last["exit_code"] == 1
    error = last["error"]
    assert f"cannot reach binance at 127.0.0.1:{port}" in error
    assert "ConnectionRefusedError" in error
    assert "Check the network, DNS, proxy and firewall" in error
    assert "TRADEBOT_FEEDS__BINANCE__REST_URL" in error
    assert "tradebot demo" in error
    assert "Traceback" not in done.stderr
