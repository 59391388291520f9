"""Fixtures: a real coordinator (the Rust binary) on a free loopback port with a temp data dir.

The binary is `$TUNEFLEET_COORDINATOR_BIN`, else `target/debug/coordinator` of the repository.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tunefleet

REPO = Path(__file__).resolve().parents[2]
READY_PREFIX = "TUNEFLEET_READY "
START_TIMEOUT_SECONDS = 20.0


def coordinator_binary():
    path = Path(os.environ.get("TUNEFLEET_COORDINATOR_BIN", REPO / "target/debug/coordinator"))
    if not path.is_file():
        pytest.fail(f"no coordinator binary at {path} (build it, or set TUNEFLEET_COORDINATOR_BIN)")
    return path


class Coordinator:
    """A coordinator child process; `url` is its `http://127.0.0.1:PORT`."""

    def __init__(self, tmp_path, **settings):
        config = [
            "version = 1",
            'listen_addr = "127.0.0.1:0"',
            'metrics_listen_addr = "127.0.0.1:0"',
            f"data_dir = {json.dumps(str(tmp_path / 'data'))}",
        ]
        config += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
        config_path = tmp_path / "coordinator.toml"
        config_path.write_text("\n".join(config) + "\n")
        self.log_path = tmp_path / "coordinator.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(coordinator_binary()), "--config", str(config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log,
            env={**os.environ, "RUST_LOG": "info,coordinator=debug"}, text=True,
        )
        lines = queue.Queue()
        threading.Thread(target=self._drain, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                self.stop()
                pytest.fail(f"coordinator not ready within {START_TIMEOUT_SECONDS} s "
                            f"(exit {self.process.returncode}); log:\n{self.log()}")
            try:
                ready = lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            self.grpc_addr = json.loads(ready)["grpc"]
            self.url = f"http://{self.grpc_addr}"
            return

    def _drain(self, lines):
        for line in self.process.stdout:
            if line.startswith(READY_PREFIX):
                lines.put(line[len(READY_PREFIX):])

    def log(self):
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def coordinator(tmp_path):
    """A coordinator with short leases: 2 s timeout, 1 s heartbeats, expiry checked every second."""
    daemon = Coordinator(tmp_path, lease_timeout_secs=2, heartbeat_interval_secs=1,
                         lease_check_interval_secs=1, max_lease_wait_secs=1)
    yield daemon
    daemon.stop()


@pytest.fixture
def client(coordinator):
    with tunefleet.Client(coordinator.url, timeout=10.0, retry_seconds=10.0) as connected:
        yield connected


PYTHON = sys.executable
