"""The GitHub Actions workflow is valid and does nothing but call the tested script."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github/workflows/distill.yml"


def test_workflow_matches_the_github_actions_schema():
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker, "check-jsonschema is a dev dependency"
    proc = subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_only_calls_the_repo_script():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    runs = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]
    assert runs == ["ci/pipeline.sh"]
    assert (ROOT / "ci/pipeline.sh").stat().st_mode & 0o111
