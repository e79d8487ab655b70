"""Data-parallel training under torchrun with the gloo backend on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "train_distributed.py"


def _run(command: list[str], data_dir: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    single = tmp_path_factory.mktemp("single")
    double = tmp_path_factory.mktemp("double")
    _run([sys.executable, str(SCRIPT), str(data_dir), str(single)], data_dir)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run([*torchrun, str(SCRIPT), str(data_dir), str(double)], data_dir)
    return {"single": single, "double": double}


def test_distributed_ranks_end_with_same_weights(runs: dict[str, Path]) -> None:
    rank0 = json.loads((runs["double"] / "rank0.json").read_text())
    rank1 = json.loads((runs["double"] / "rank1.json").read_text())
    assert rank0["checksum"] == pytest.approx(rank1["checksum"], rel=1e-6)


def test_distributed_accuracy_matches_single_process(runs: dict[str, Path]) -> None:
    single = json.loads((runs["single"] / "rank0.json").read_text())
    double = json.loads((runs["double"] / "rank0.json").read_text())
    assert abs(double["accuracy"] - single["accuracy"]) < 0.1
