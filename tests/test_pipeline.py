"""End to end: the real pipeline on the tiny configuration (one shared `dvc repro`, see conftest)."""

import json

import pytest
import yaml
from conftest import override_params, run

pytestmark = pytest.mark.slow

FORMATS = ["quanto-int8", "gguf-q8_0", "gguf-q8_0-gptq"]  # quantize.formats in params.yaml
STAGES = ["prepare", "generate", "curate", "score", "train", "merge", *(f"quantize@{fmt}" for fmt in FORMATS),
          "quantize@quanto-int4", "evaluate"]


def ran_stages(output: str) -> list[str]:
    """Return the stages `dvc repro` / `dvc exp run` actually ran, from its log."""
    return [stage for stage in STAGES if f"Running stage '{stage}'" in output]


@pytest.fixture(autouse=True)
def back_to_a_clean_pipeline(pipeline):
    """After each test: uncommitted params back, and every output as dvc.lock says (from the cache).

    So the tests here pass in any order (run them reversed with POTSTILL_TEST_ORDER=reverse).
    """
    yield
    run(["git", "checkout", "--", "params.yaml"], pipeline)
    run(["dvc", "repro"], pipeline, timeout=1800)


def test_every_stage_writes_its_outputs(pipeline):
    for path in ("models/teacher/model.safetensors", "models/student-base/potstill_layer_map.json",
                 "data/generated/responses.jsonl", "data/curated/train.jsonl",
                 "data/soft-targets/soft_targets.safetensors", "models/adapter/adapter_config.json",
                 "models/merged/model.safetensors", "models/quantized/quanto-int8/potstill_quantization.json",
                 "models/quantized/quanto-int8/README.md", "models/quantized/gguf-q8_0/model.gguf",
                 "metrics/quantize/gguf-q8_0.json", "reports/model_cards/gguf-q8_0.md", "reports/eval.md",
                 "metrics/eval.json", "metrics/train/metrics.json", "data/curated/report.md"):
        assert (pipeline / path).exists(), path
    layer_map = json.loads((pipeline / "models/student-base/potstill_layer_map.json").read_text())
    assert layer_map == {"0": 0, "1": 29}
    lock = (pipeline / "dvc.lock").read_text()
    assert "site-packages" not in lock  # the teacher is pinned by package version, not by path


def test_metrics_cover_every_model_and_task(pipeline):
    report = json.loads((pipeline / "metrics/eval.json").read_text())
    assert set(report) == {"teacher", "student_base", "adapter", "merged", *FORMATS, "gates"}
    assert all(gate["passed"] == 1 for gate in report.pop("gates").values())
    assert abs(report.pop("adapter")["heldout_nll"] - report["merged"]["heldout_nll"]) < 1e-3
    for name, scores in report.items():
        assert 0 <= scores["potstill_mc"]["acc"] <= 1, name
        assert scores["kl_vs_teacher"] >= 0 and 0 <= scores["top1_vs_teacher"] <= 1, name
        assert scores["ms_per_token"] > 0 and scores["size_bytes"] > 0 and 0 <= scores["ece"] <= 1, name
        assert 0 <= scores["potstill_gen"]["exact_match"] <= 1, name
        assert scores["heldout_nll"] > 0, name
        assert 0 <= scores["degenerate_share"] <= 1 and scores["engine"], name
        low, high = scores["ci95"]["kl_vs_teacher"]
        assert low <= scores["kl_vs_teacher"] <= high, name
    # ms/token: every engine generated the same number of tokens (a multiple of evaluate.new_tokens).
    timed = {scores["timed_tokens"] for scores in report.values() if "timed_tokens" in scores}
    assert len(timed) == 1 and timed.pop() % 8 == 0
    # The teacher wrote the held-out answers: it must find them far likelier than a 2-layer cut.
    assert report["teacher"]["heldout_nll"] < report["student_base"]["heldout_nll"]
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], pipeline).stdout)
    files = list(shown[""]["data"]) if "" in shown else list(next(iter(shown.values()))["data"])
    assert files == ["metrics/summary.json", "metrics/eval.json"]  # the headline first; counters are plain outputs
    summary = json.loads((pipeline / "metrics/summary.json").read_text())
    assert set(summary) == {"merged", *FORMATS, "teacher", "student_base", "gates_failed"}
    assert set(summary["merged"]) == {"potstill_mc", "potstill_gen", "kl_vs_teacher", "top1_vs_teacher",
                                      "onpolicy_kl", "answer_tokens_vs_teacher", "degenerate_share", "size_mb",
                                      "ms_per_token"}
    # What a user reads: the KL on each model's own answers, with its interval, and length against the teacher's.
    merged = report["merged"]
    low, high = merged["ci95"]["onpolicy_kl"]
    assert 0 <= low <= merged["onpolicy_kl"] <= high
    assert merged["answer_tokens_vs_teacher"] == merged["answer_tokens"] / report["teacher"]["answer_tokens"]
    assert "onpolicy_kl" not in report["teacher"]


# Lines every stage used to print that tell a user nothing (see potstill/cli.py quiet_known_noise).
KNOWN_NOISE = ("Failed to load", "torch/utils/_pytree.py", "is an Enum subclass", "Generating test split",
               "Generating val split", "Generating train split", "is_gradient_checkpointing")


def test_the_stages_logs_carry_none_of_the_known_harmless_noise(pipeline):
    logs = pipeline.parent / "repro-logs"
    text = (logs / "stdout.txt").read_text() + (logs / "stderr.txt").read_text()
    assert "Running stage 'evaluate'" in text  # the logs are the whole run's
    assert [line for line in text.splitlines() if any(noise in line for noise in KNOWN_NOISE)] == []


def test_second_repro_runs_nothing(pipeline):
    output = run(["dvc", "repro"], pipeline).stdout
    assert ran_stages(output) == [], output


def test_evaluate_param_reruns_only_evaluate(pipeline):
    override_params(pipeline / "params.yaml", {"evaluate": {"batch_size": 2}})
    output = run(["dvc", "repro"], pipeline).stdout
    assert ran_stages(output) == ["evaluate"], output


def test_adding_a_format_builds_only_that_format_and_evaluate(pipeline):
    import shutil

    override_params(pipeline / "params.yaml", {"quantize": {"formats": [*FORMATS, "quanto-int4"]}})
    output = run(["dvc", "repro"], pipeline).stdout
    assert ran_stages(output) == ["quantize@quanto-int4", "evaluate"], output
    assert "quanto-int4" in json.loads((pipeline / "metrics/eval.json").read_text())
    # Back to the committed list; the extra folder is no longer an output: remove it before the next commit.
    override_params(pipeline / "params.yaml", {"quantize": {"formats": FORMATS}})
    shutil.rmtree(pipeline / "models/quantized/quanto-int4")
    (pipeline / "metrics/quantize/quanto-int4.json").unlink()


def test_lora_rank_reruns_train_merge_quantize_evaluate(pipeline):
    override_params(pipeline / "params.yaml", {"lora": {"r": 2}})
    output = run(["dvc", "repro"], pipeline).stdout
    assert ran_stages(output) == ["train", "merge", *(f"quantize@{fmt}" for fmt in FORMATS), "evaluate"], output
    run(["git", "add", "-A"], pipeline)
    run(["git", "commit", "-qm", "lora r=2"], pipeline)


def test_the_applied_profile_is_named_where_dvc_exp_show_shows_params(pipeline):
    shown = json.loads(run(["dvc", "exp", "show", "--json"], pipeline).stdout)
    assert shown[0]["data"]["params"]["params.yaml"]["data"]["profile"] == "tiny"


def test_experiment_run_and_show(pipeline):
    baseline_rank = yaml.safe_load((pipeline / "params.yaml").read_text())["lora"]["r"]  # 2 after the rank test
    run(["dvc", "exp", "run", "-n", "rank8", "-S", "lora.r=8"], pipeline, timeout=1200)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], pipeline).stdout)
    flat = json.dumps(shown)
    assert "rank8" in flat
    ranks = []
    for baseline in shown:
        for entry in [baseline, *(exp for exp in (baseline.get("experiments") or []))]:
            for revision in entry.get("revs", [entry]) if isinstance(entry, dict) else []:
                params = (((revision.get("data") or {}).get("params") or {}).get("params.yaml") or {})
                r = ((params.get("data") or {}).get("lora") or {}).get("r")
                if r is not None:
                    ranks.append(r)
    assert {baseline_rank, 8} <= set(ranks), flat[:2000]
    table = run(["dvc", "exp", "show", "--md", "--no-pager"], pipeline).stdout
    assert "rank8" in table and "heldout_nll" in table


def test_bad_params_stop_a_stage_before_it_touches_outputs(pipeline):
    before = (pipeline / "models/adapter/adapter_config.json").read_bytes()
    params = yaml.safe_load((pipeline / "params.yaml").read_text())
    params["lora"]["r"] = 0
    (pipeline / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run(["python", "stages/train.py"], pipeline, check=False)
    assert proc.returncode == 2
    assert "lora.r: Input should be greater than or equal to 1 (got 0)" in proc.stderr
    assert (pipeline / "models/adapter/adapter_config.json").read_bytes() == before
    run(["git", "checkout", "params.yaml"], pipeline)


def queued_experiments(shown: list[dict]) -> dict[str, dict]:
    """Return {experiment name: its `data` (params, metrics)} from `dvc exp show --json`."""
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                if revision.get("name") and revision.get("data"):
                    found[revision["name"]] = revision["data"]
    return found


def test_queued_sweep_runs_in_temp_copies_without_asking_the_teacher(pipeline):
    """Two queued ranks run to completion; only train..evaluate rerun, in the same state dir."""
    names = {"sweep-r3": 3, "sweep-r6": 6}
    for name, rank in names.items():
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"lora.r={rank}"], pipeline)
    assert run(["dvc", "queue", "status"], pipeline).stdout.count("Queued") == 2
    # --run-all starts a queue worker (which inherits this environment: PATH with the venv first,
    # POTSTILL_STATE_DIR) and waits until the queue is empty.
    proc = run(["dvc", "exp", "run", "--run-all", "-j", "1"], pipeline, check=False, timeout=900)
    logs = {name: run(["dvc", "queue", "logs", name], pipeline, check=False).stdout for name in names}
    status = run(["dvc", "queue", "status"], pipeline).stdout
    assert proc.returncode == 0 and status.count("Success") >= 2, f"{status}\n{proc.stderr[-2000:]}\n{logs}"
    for log in logs.values():
        # generate did not rerun, so the teacher was not asked; curate and score did not either.
        # (train..quantize run, or come from the run cache when this rank was trained before.)
        assert not {"prepare", "generate", "curate", "score"} & set(ran_stages(log)), log[-3000:]
        assert "Stage 'generate' didn't change, skipping" in log and "evaluate" in ran_stages(log), log[-3000:]
        # The eval score cache lives in POTSTILL_STATE_DIR: hits prove the worker saw the same one.
        assert "evaluate: teacher: cached scores" in log, log[-3000:]

    experiments = queued_experiments(json.loads(run(["dvc", "exp", "show", "--json"], pipeline).stdout))
    assert set(names) <= set(experiments), list(experiments)
    nll = {}
    for name, rank in names.items():
        data = experiments[name]
        assert data["params"]["params.yaml"]["data"]["lora"]["r"] == rank
        metrics = data["metrics"]
        assert list(metrics)[0] == "metrics/summary.json"  # the headline leads every view
        nll[name] = metrics["metrics/eval.json"]["data"]["merged"]["heldout_nll"]
    assert nll["sweep-r3"] != nll["sweep-r6"], nll

    # The compare command: both runs as rows, the changed param and the headline as columns, 120 wide.
    table = run(["python", "tools/compare.py", "--plot", "compare.png"], pipeline).stdout
    assert (pipeline / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (pipeline / "compare.png").unlink()
    table = table.split("\ncompare: ")[0]
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 120, table
    header = lines[0].split()
    assert header[0] == "experiment" and "lora.r" in header, table
    assert {"mc", "gen", "KL", "top1", "loops", "MiB", "ms/tok"} <= set(header), table
    assert any(line.startswith("sweep-r3") for line in lines) and any(line.startswith("sweep-r6") for line in lines)
    assert "ledger" not in table and "requested" not in table and "*" in table



def test_ci_script_pushes_and_a_wiped_workspace_pulls_back_identical(pipeline, tmp_path):
    """ci/pipeline.sh (what the GPU workflow runs) against a local remote, then a fresh pull."""
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "ci", str(remote)], pipeline)
    summary = tmp_path / "summary.md"
    env_run = run(["bash", "ci/pipeline.sh"], pipeline, env_extra={
        "POTSTILL_SKIP_SETUP": "1", "GITHUB_STEP_SUMMARY": str(summary), "POTSTILL_BASE_REF": "HEAD~1"})
    text = summary.read_text()
    assert "## potstill: experiments" in text and "## Headline metrics against HEAD~1" in text, env_run.stdout
    assert "kl_vs_teacher" in text and "experiment" in text and "heldout_nll" not in text
    assert any(remote.rglob("*")), "nothing was pushed"

    lock_before = (pipeline / "dvc.lock").read_text()
    merged = (pipeline / "models/merged/model.safetensors").read_bytes()
    import shutil
    shutil.rmtree(pipeline / ".dvc" / "cache")
    for output in ("models", "data/generated", "data/curated", "data/soft-targets"):
        shutil.rmtree(pipeline / output)
    run(["git", "checkout", "--", "models"], pipeline)  # a fresh clone has the tracked .gitignore files
    run(["dvc", "pull", "--allow-missing"], pipeline)
    assert (pipeline / "models/merged/model.safetensors").read_bytes() == merged
    assert not (pipeline / "models/teacher").exists()  # push: false, regenerable
    # Rebuilding the unpushed intermediates reproduces them bit for bit: nothing downstream reruns.
    output = run(["dvc", "repro"], pipeline).stdout
    assert ran_stages(output) == ["prepare", "score"], output
    assert (pipeline / "dvc.lock").read_text() == lock_before
    status = run(["dvc", "status"], pipeline).stdout
    assert "up to date" in status, status


def test_s3_remote_round_trip_against_a_loopback_s3_server(pipeline, tmp_path):
    """dvc-s3 push, wipe cache and outputs, pull: identical files (moto's S3 server on 127.0.0.1)."""
    import shutil

    import boto3
    from moto.server import ThreadedMotoServer

    from potstill.teacher.server import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in credentials.items()
                                                    if k != "AWS_DEFAULT_REGION"},
                     region_name="us-east-1").create_bucket(Bucket="potstill")
        run(["dvc", "remote", "add", "s3", "s3://potstill/store"], pipeline)
        run(["dvc", "remote", "modify", "s3", "endpointurl", endpoint], pipeline)
        run(["dvc", "push", "-r", "s3"], pipeline, env_extra=credentials)
        adapter = (pipeline / "models/adapter/adapter_model.safetensors").read_bytes()
        responses = (pipeline / "data/generated/responses.jsonl").read_bytes()
        shutil.rmtree(pipeline / ".dvc" / "cache")
        shutil.rmtree(pipeline / "models/adapter")
        shutil.rmtree(pipeline / "data/generated")
        run(["dvc", "pull", "-r", "s3", "models/adapter", "data/generated"], pipeline, env_extra=credentials)
        assert (pipeline / "models/adapter/adapter_model.safetensors").read_bytes() == adapter
        assert (pipeline / "data/generated/responses.jsonl").read_bytes() == responses
    finally:
        server.stop()
