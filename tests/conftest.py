"""Shared fixtures. Real third-party data lives beside the checkout in ../shared/data/real
(research use: tests and evaluation only, never shipped)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Benchmark helper modules (e.g. benchmarks/node_bench.py, shared by the node tests and the node
# benchmarks) are importable by name from tests.
sys.path.insert(0, str(REPO / "benchmarks"))


def _real_data_dir() -> Path:
    env = os.environ.get("TADP_REAL_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Root of the real frames/labels/calibration files; a missing folder fails loudly."""
    path = _real_data_dir()
    if not path.is_dir():
        pytest.fail(f"real test data not found at {path}; set TADP_REAL_DATA to its location")
    return path
