"""train.launcher: ddp on CPU: stages/train.py re-runs itself under `accelerate launch` with
configs/accelerate/ddp_cpu.yaml (2 processes, gloo); only the main process writes outputs."""

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.test_train import tiny_params, tiny_run  # noqa: F401  (the fixture is shared)

ROOT = Path(__file__).resolve().parents[1]


def test_ddp_on_two_cpu_processes_trains_and_writes_once(tiny_run, tiny_model_dir, tmp_path):  # noqa: F811
    params = tiny_params(tmp_path, launcher="ddp", max_steps=4, logging_steps=1)
    cmd = [sys.executable, str(ROOT / "stages/train.py"), "--params", str(params), "--student", str(tiny_model_dir),
           "--curated", str(tiny_run / "curated"), "--generated", str(tiny_run / "generated"),
           "--soft-targets", str(tmp_path / "none"), "--out", str(tmp_path / "adapter"),
           "--live", str(tmp_path / "live")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ddp_cpu.yaml" in proc.stdout
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("metrics.json")] == [Path("live/metrics.json")]
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["final/global_step"] == 4 and math.isfinite(metrics["final/train_loss"])
    ce_curve = (tmp_path / "live" / "plots" / "metrics" / "ce_loss.tsv").read_text().splitlines()
    assert len(ce_curve) == 5  # header + one line per step: one writer, not two
    assert proc.stdout.count("train: {") == 1  # the final metrics, printed by the main process only
