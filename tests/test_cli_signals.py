"""SIGTERM ends a command like Ctrl-C: the embedded server it started is stopped, not orphaned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from smarttrade.redis.embedded import STATE_FILE, ping


def test_sigterm_stops_the_embedded_server(tmp_path: Path) -> None:
    env = {**os.environ, "SMARTTRADE_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    env.pop("REDIS_URL", None)
    exe = Path(sys.executable).parent / "smarttrade"
    demo = subprocess.Popen(
        [str(exe), "demo"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / STATE_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        port = json.loads((tmp_path / STATE_FILE).read_text())["port"]
        assert ping(port)
        time.sleep(1.0)
        demo.send_signal(signal.SIGTERM)
        stdout, _ = demo.communicate(timeout=60)
    finally:
        demo.kill()
    assert "keys per store at the end of the demo" in stdout
    assert not ping(port)
    assert not (tmp_path / STATE_FILE).exists()
