"""The committed stubs are what `generate.sh` makes from `proto/` today."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]


def test_committed_stubs_are_current(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools is needed to regenerate the stubs")
    subprocess.run(["bash", str(PYTHON_DIR / "generate.sh"), str(tmp_path)], check=True,
                   env={**os.environ, "PYTHON": sys.executable})
    for name in ("tunefleet_pb2.py", "tunefleet_pb2_grpc.py"):
        fresh = tmp_path / "tunefleet" / "v1" / name
        committed = PYTHON_DIR / "tunefleet" / "v1" / name
        assert filecmp.cmp(fresh, committed, shallow=False), (
            f"{committed} is stale: run python/generate.sh (with grpcio-tools==1.85.1)")
