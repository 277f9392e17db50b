"""The classifier pipeline's parts: label tokens, soft labels, the KD loss, training, ONNX parity, bad input."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from potstill.classify.curate import curate_rows
from potstill.classify.data import read_texts
from potstill.classify.labels import LabelTokens, label_tokens, labelling_messages, soft_labels
from potstill.classify.metrics import classifier_scores, macro_f1
from potstill.classify.student import classification_kd_loss
from potstill.errors import InputError, ParamsError
from potstill.params import ClassifyParams, load_params
from tests.conftest import ROOT, shipped

LABELS = ["delivery", "return", "payment"]


def label(name, description="d", example="e"):
    return SimpleNamespace(name=name, description=description, example=example)


# --- label tokens, checked after the chat template --------------------------------------------

def test_the_shipped_labels_each_start_with_their_own_token(tokenizer):
    classify = load_params(ROOT / "params.yaml", "classify")["classify"]
    tokens = label_tokens(tokenizer, classify.labels, classify.instruction)
    assert len(set(tokens.ids)) == len(classify.labels)
    # Each id is what the tokenizer makes of the label right after the assistant header.
    for name, token_id in zip(tokens.names, tokens.ids, strict=True):
        assert tokenizer(name, add_special_tokens=False)["input_ids"][0] == token_id


def test_labels_with_the_same_first_token_are_refused_naming_both(tokenizer):
    # "refund" and "ref" both begin with the token "ref" in the SmolLM2 vocabulary.
    with pytest.raises(InputError, match=r"'refund' and 'ref' both start with the token 'ref'"):
        label_tokens(tokenizer, [label("refund"), label("ref"), label("delivery")], "Sort:")


def test_a_first_token_that_begins_another_label_is_refused(tokenizer):
    # "return" is one token, and it also begins "returns" (a different first token or not, the
    # teacher's "return" could be the start of either).
    first = tokenizer("returns", add_special_tokens=False)["input_ids"][0]
    assert tokenizer.decode([first]) != "return"  # the two differ in their first token...
    with pytest.raises(InputError, match="which also begins 'returns'"):
        label_tokens(tokenizer, [label("return"), label("returns")], "Sort:")


def test_the_labelling_chat_shows_every_label_once_as_an_example_turn():
    labels = [label("delivery", "parcels", "Where is it?"), label("return", "refunds", "Money back")]
    messages = labelling_messages(labels, "Sort these.", "my text")
    assert messages[0]["content"] == "Sort these.\n- delivery: parcels\n- return: refunds"
    assert [m["content"] for m in messages[1:]] == ["Where is it?", "delivery", "Money back", "return", "my text"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user", "assistant", "user"]


# --- soft labels from top_logprobs -------------------------------------------------------------

TOKENS = LabelTokens(names=("delivery", "return", "payment"), ids=(1, 2, 3), texts=("delivery", "return", "payment"))


def record(top):
    return {"logprobs": [{"token": top[0][0], "logprob": top[0][1], "top": top}]}


def test_soft_labels_renormalise_the_label_tokens_mass():
    top = [["return", math.log(0.4)], ["The", math.log(0.3)], ["delivery", math.log(0.2)], ["x", math.log(0.1)]]
    soft = soft_labels(record(top), TOKENS)
    assert soft["mass"] == pytest.approx(0.6)
    assert soft["probs"] == pytest.approx([0.2 / 0.6, 0.4 / 0.6, 0.0])


def test_a_leading_space_variant_counts_for_its_label():
    top = [["payment", math.log(0.5)], [" payment", math.log(0.25)], ["return", math.log(0.25)]]
    assert soft_labels(record(top), TOKENS)["probs"] == pytest.approx([0.0, 0.25, 0.75])


def test_no_label_among_the_alternatives_gives_no_distribution():
    soft = soft_labels(record([["I", -0.1], ["The", -2.0]]), TOKENS)
    assert soft == {"probs": None, "mass": 0.0}


def test_an_endpoint_without_logprobs_is_refused():
    with pytest.raises(InputError, match="no logprobs"):
        soft_labels({"logprobs": None}, TOKENS)


# --- the seed's loss on classification logits --------------------------------------------------

def test_kd_loss_equals_a_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    teacher = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    alpha, T = 0.7, 2.0
    total, ce, kd = classification_kd_loss(logits, teacher, alpha, T)

    def softmax(values):
        exps = [math.exp(v) for v in values]
        return [e / sum(exps) for e in exps]

    kls, ces = [], []
    for z, p in zip(logits.tolist(), teacher.tolist(), strict=True):
        p_t = softmax([math.log(x) / T for x in p])  # teacher re-tempered: p^(1/T), renormalised
        q_t = softmax([v / T for v in z])
        kls.append(sum(a * math.log(a / b) for a, b in zip(p_t, q_t, strict=True)))
        ces.append(-math.log(softmax(z)[p.index(max(p))]))
    hand_kd = sum(kls) / 2 * T**2
    hand_ce = sum(ces) / 2
    assert float(kd) == pytest.approx(hand_kd, rel=1e-5)
    assert float(ce) == pytest.approx(hand_ce, rel=1e-5)
    assert float(total) == pytest.approx(alpha * hand_kd + (1 - alpha) * hand_ce, rel=1e-5)


def test_kd_loss_is_zero_when_the_student_matches_the_teacher_and_alpha_is_one():
    teacher = torch.tensor([[0.5, 0.3, 0.2]])
    total, _, kd = classification_kd_loss(teacher.log(), teacher, 1.0, 2.0)
    assert float(kd) == pytest.approx(0.0, abs=1e-6)
    assert float(total) == pytest.approx(0.0, abs=1e-6)


def test_hard_labels_are_plain_cross_entropy_on_the_teacher_argmax():
    logits = torch.tensor([[0.1, 2.0, -0.5]])
    total, _, _ = classification_kd_loss(logits, torch.tensor([[0.1, 0.2, 0.7]]), 0.0, 2.0)
    assert float(total) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.tensor([2])))), \
        "alpha 0 must train on the argmax (label 2), not on the distribution"


def test_a_label_the_teacher_gave_no_mass_does_not_make_the_loss_infinite():
    logits = torch.tensor([[0.0, 1.0, 2.0]], requires_grad=True)
    total, _, _ = classification_kd_loss(logits, torch.tensor([[0.0, 0.25, 0.75]]), 0.5, 2.0)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(logits.grad).all()


# --- metrics --------------------------------------------------------------------------------

def test_macro_f1_counts_a_label_never_predicted_as_zero():
    # gold 0,0,1,1; predicted all 0: F1(0) = 2*2/(2*2+2+0) = 2/3, F1(1) = 0.
    assert macro_f1([0, 0, 0, 0], [0, 0, 1, 1], 2) == pytest.approx((2 / 3 + 0) / 2)


def test_classifier_scores_intervals_contain_the_value_and_agreement_is_against_the_teacher():
    probs = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]] * 10
    scores = classifier_scores(probs, gold=[0, 1, 1, 1] * 10, teacher=[0, 1, 0, 0] * 10, classes=2)
    assert scores["gold"]["acc"] == pytest.approx(0.75)
    assert scores["gold"]["agree"] == pytest.approx(0.75)  # predicted 0,1,0,1 vs teacher 0,1,0,0
    for key in ("acc", "agree", "macro_f1", "ece"):
        low, high = scores["ci95"][key]
        assert low <= scores["gold"][key] <= high


# --- bad input ------------------------------------------------------------------------------

def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_an_unknown_gold_label_names_the_file_the_line_and_the_labels(tmp_path):
    path = write_jsonl(tmp_path / "gold.jsonl", [{"id": "g1", "text": "where is it", "label": "delivery"},
                                                 {"id": "g2", "text": "refund me", "label": "refunds"}])
    with pytest.raises(InputError, match=r"gold.jsonl:2: gold label 'refunds' is not one of classify.labels "
                                         r"\(delivery, return, payment\)"):
        read_texts(path, labels=LABELS)


def test_an_empty_text_names_the_file_and_the_line(tmp_path):
    path = write_jsonl(tmp_path / "texts.jsonl", [{"id": "t1", "text": "ok"}, {"id": "t2", "text": "   "}])
    with pytest.raises(InputError, match=r"texts.jsonl:2: \"text\" is missing or empty"):
        read_texts(path)


def test_a_label_set_of_one_is_refused():
    params = shipped("classify").model_dump()
    params["labels"] = params["labels"][:1]
    with pytest.raises(ValueError, match="at least two labels; got 1"):
        ClassifyParams.model_validate(params)


def test_two_labels_with_one_name_are_refused():
    params = shipped("classify").model_dump()
    params["labels"] = [params["labels"][0], params["labels"][0]]
    with pytest.raises(ValueError, match=r"\['delivery'\] appear twice"):
        ClassifyParams.model_validate(params)


def test_a_label_set_of_one_in_params_yaml_names_the_key(tmp_path):
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["classify"]["labels"] = raw["classify"]["labels"][:1]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="classify.labels: .*at least two labels"):
        load_params(tmp_path / "params.yaml", "classify")


# --- curate -----------------------------------------------------------------------------------

def row(id_, text, mass=0.9, probs=(0.8, 0.1, 0.1)):
    return {"id": id_, "text": text, "label_mass": mass, "teacher_probs": list(probs) if probs else None,
            "teacher_label": "delivery"}


def test_curate_drops_low_mass_duplicates_and_gold_restatements():
    rows = [row("a", "where is my parcel from last week"), row("b", "Where is my  parcel from last week"),
            row("c", "the teacher rambled", mass=0.1), row("d", "no label at all", mass=0.0, probs=None),
            row("e", "I want to send back the blue shoes I bought"),
            row("f", "my card was charged twice for one order")] + [row(f"k{i}", f"text number {i} about stuff")
                                                                    for i in range(20)]
    gold = [{"id": "g", "text": "I want to send back the blue shoes I bought yesterday", "label": "return"}]
    splits, report = curate_rows(rows, gold, min_label_mass=0.3, val_fraction=0.2, seed=0)
    assert report["dropped"] == {"low_label_mass": 2, "duplicate": 1, "restates_gold": 1}
    kept = {r["id"] for r in splits["train"] + splits["val"]}
    assert kept == {"a", "f"} | {f"k{i}" for i in range(20)}
    assert len(splits["val"]) == round(22 * 0.2)
    # The split is by id hash: the same rows in another order give the same val.
    again, _ = curate_rows(list(reversed(rows)), gold, 0.3, 0.2, 0)
    assert {r["id"] for r in again["val"]} == {r["id"] for r in splits["val"]}


# --- training and ONNX on a tiny encoder built from config, with the shipped tokenizer ---------------

@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A 2-layer, 64-wide BERT with all-MiniLM-L6-v2's tokenizer (unpacked from the shipped package).

    64 wide, not 32: int8 with 7-bit per-channel weights (the export's default) flipped 3 of the ONNX
    test's 23 argmaxes on a 32-wide toy, whose margins are a fraction of a real encoder's.
    """
    from transformers import AutoTokenizer, BertConfig, BertModel

    from potstill.models import unpack_shipped_model

    root = tmp_path_factory.mktemp("encoder")
    classify = shipped("classify")
    unpack_shipped_model(classify.student_package, classify.student_version, "classify.student_package",
                         root / "minilm")
    tokenizer = AutoTokenizer.from_pretrained(root / "minilm")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128)
    BertModel(config).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    return root / "tiny"


KEYWORDS = {"parcel": [0.8, 0.1, 0.1], "refund": [0.1, 0.8, 0.1], "card": [0.1, 0.1, 0.8]}


def keyword_rows(n, offset=0):
    words = list(KEYWORDS)
    rows = []
    for i in range(n):
        word = words[i % 3]
        rows.append({"id": f"r{offset + i}", "text": f"{word} question {i} about my {word}",
                     "teacher_probs": KEYWORDS[word], "teacher_label": LABELS[i % 3]})
    return rows


@pytest.fixture(scope="module")
def trained(tiny_encoder, tmp_path_factory):
    """(summary, folder) of a tiny student trained on keyword texts whose keyword decides the teacher's label."""
    from potstill.classify.student import train_student

    out = tmp_path_factory.mktemp("student") / "soft"
    classify = shipped("classify", epochs=8, batch_size=8, learning_rate=5e-3, keep_layers=None)
    summary = train_student(tiny_encoder, keyword_rows(48), keyword_rows(12, offset=100), LABELS, classify,
                            alpha=0.5, out=out, progress=False)
    return summary, out


def test_training_learns_the_teacher_and_logs_the_loss_it_minimises(trained):
    summary, out = trained
    # A student that learned anything agrees far above chance (1/3) with the keyword's label.
    assert summary["best_val_agree"] >= 0.9
    assert summary["best_epoch"] == max(summary["epochs"], key=lambda e: e["eval_agree"])["epoch"]
    assert summary["losses"]
    for entry in summary["losses"]:
        assert entry["loss"] == pytest.approx(0.5 * entry["kd_loss"] + 0.5 * entry["ce_loss"], rel=1e-3, abs=1e-4)
    assert (out / "config.json").exists()


def test_onnx_export_matches_pytorch_and_int8_keeps_the_argmax(trained, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from potstill.classify.onnx_export import OnnxClassifier, export, parity
    from potstill.classify.student import predict_proba

    model = AutoModelForSequenceClassification.from_pretrained(trained[1])
    tokenizer = AutoTokenizer.from_pretrained(trained[1])
    texts = [row["text"] for row in keyword_rows(21)] + ["a much longer message about a parcel " * 4, "x"]
    export(model, tokenizer, tmp_path / "onnx", texts)
    check = parity(model, tokenizer, tmp_path / "onnx", texts, max_length=64)
    assert check["fp32_max_abs_logit_diff"] < 1e-4  # same graph: only float reordering
    assert check["int8_argmax_agreement"] >= 0.9
    torch_probs = predict_proba(model, tokenizer, texts, 4, 64)
    assert len({max(range(3), key=p.__getitem__) for p in torch_probs}) == 3  # the check sees all three labels
    # The served path (tokenise in batches, padded per batch) gives PyTorch's probabilities too.
    onnx_probs = OnnxClassifier(tmp_path / "onnx" / "model.onnx").predict_proba(tokenizer, texts, 4, 64)
    flat = [p for row in onnx_probs for p in row]
    assert flat == pytest.approx([p for row in torch_probs for p in row], abs=1e-5)


def test_the_encoder_can_be_cut_to_some_of_its_layers(tiny_encoder):
    from potstill.classify.student import load_encoder

    full, tokenizer = load_encoder(tiny_encoder, LABELS)
    cut, _ = load_encoder(tiny_encoder, LABELS, keep_layers=[1])
    assert cut.config.num_hidden_layers == 1 and len(cut.bert.encoder.layer) == 1
    # The kept layer is the full encoder's layer 1, weights and all.
    assert torch.equal(cut.bert.encoder.layer[0].output.dense.weight, full.bert.encoder.layer[1].output.dense.weight)
    batch = tokenizer(["where is my parcel"], return_tensors="pt")
    assert cut(**batch).logits.shape == (1, 3)
    with pytest.raises(InputError, match=r"classify.keep_layers: \[0, 2\] names a layer the encoder lacks"):
        load_encoder(tiny_encoder, LABELS, keep_layers=[0, 2])


def test_a_gate_on_a_model_the_classifier_does_not_evaluate_is_refused_before_anything_loads(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from stages.classify.evaluate import app

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["classify"]["gates"] = [{"name": "typo", "metric": "gold.acc", "model": "student_sfot", "min": 0.5}]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(app, ["--params", str(tmp_path / "params.yaml"), "--labelled", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert ("classify.gates[0] (typo): model 'student_sfot' is not evaluated; evaluated models: teacher, majority, "
            "tfidf_logreg, student_hard, student_soft, onnx_int8\n") in result.output


def test_labelling_refuses_a_teacher_served_without_log_probs_and_reads_a_gguf_teachers_own_tokenizer(
        tiny_model_dir, teacher_gguf):
    from potstill.classify.labelling import teacher_tokenizer

    classify = shipped("classify")
    checkpoint = shipped("teacher", weights=str(tiny_model_dir), revision=None)
    with pytest.raises(InputError, match=r"top_logprobs.*transformers-serve.*returns no log-probs"):
        teacher_tokenizer(checkpoint, classify)
    gguf = teacher_tokenizer(shipped("teacher", weights=str(teacher_gguf), revision=None), classify)
    assert gguf.convert_tokens_to_ids("<|im_end|>") == 2 and len(gguf) == 49152


def test_the_classifier_grid_measures_on_val_and_never_opens_the_gold_set(tiny_encoder, monkeypatch):
    """bench/classify_grid.py: one configuration trained and measured on teacher-labelled val rows."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    import classify_grid

    assert "gold" not in classify_grid.CURATED.as_posix() and "gold.jsonl" not in (
        ROOT / "bench/classify_grid.py").read_text()
    monkeypatch.setattr(classify_grid, "ENCODER", tiny_encoder)
    classify = shipped("classify", epochs=6, batch_size=8, learning_rate=5e-3, speed_batch_size=4, keep_layers=None,
                       labels=[{"name": name, "description": "d", "example": "e"} for name in LABELS])
    schedule = {"alpha": 0.5, "temperature": 2.0, "learning_rate": 5e-3, "epochs": 6}  # over the grid's BASE
    row = classify_grid.run_one("soft", schedule, classify, keyword_rows(48), keyword_rows(12, offset=100))
    # The keyword decides the teacher's label: a trained student agrees with it on val, and the figures
    # come with intervals that contain them.
    assert row["agree"] >= 0.9 and row["ci95"]["agree"][0] <= row["agree"] <= row["ci95"]["agree"][1]
    assert 0 <= row["ece"] <= 1 and row["ci95"]["ece"][0] <= row["ece"] <= row["ci95"]["ece"][1] + 1e-9
    assert len(row["history"]) == 6 and row["best_epoch"] in {e["epoch"] for e in row["history"]}
    assert row["items_per_s"] > 0 and row["val_rows"] == 12


def test_the_int8_bench_measures_every_option_set_against_fp32_on_val_and_training_texts(trained, tmp_path,
                                                                                          monkeypatch):
    import sys

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from potstill.classify.onnx_export import export

    sys.path.insert(0, str(ROOT / "bench"))
    import classify_grid

    model = AutoModelForSequenceClassification.from_pretrained(trained[1])
    tokenizer = AutoTokenizer.from_pretrained(trained[1])
    export(model, tokenizer, tmp_path / "onnx", [row["text"] for row in keyword_rows(4)])
    (tmp_path / "curated").mkdir()
    write_jsonl(tmp_path / "curated/val.jsonl", keyword_rows(12, offset=100))
    write_jsonl(tmp_path / "curated/train.jsonl", keyword_rows(30))
    monkeypatch.setattr(classify_grid, "CURATED", tmp_path / "curated")
    classify_grid.int8(onnx_dir=tmp_path / "onnx", results=tmp_path / "int8.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "int8.jsonl").read_text().splitlines()]
    assert [row["options"] for row in rows] == list(classify_grid.INT8_OPTIONS)
    for row in rows:
        assert row["texts"] == 42 and 0 <= row["argmax_agreement_with_fp32"] <= 1 and row["items_per_s"] > 0
    # MatMul-only leaves the embeddings in fp32: a larger file than quantizing them too.
    sizes = {row["options"]: row["megabytes"] for row in rows}
    assert sizes["MatMul only"] > sizes["onnxruntime defaults"]
