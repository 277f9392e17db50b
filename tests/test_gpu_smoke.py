"""bench/gpu_smoke.py: on a machine without CUDA it says so and exits 0 (CI-safe)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script runs for real")
def test_gpu_smoke_skips_cleanly_without_cuda():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_smoke.py")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device: skipped" in proc.stdout
