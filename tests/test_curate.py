"""Curation flags the right rows for the right reasons, splits deterministically, and reports why."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from potstill.curate.curator import Curator
from potstill.curate.decontam import Decontaminator
from potstill.curate.dedupe import NearDuplicates
from potstill.curate.filters import dialogue_text
from potstill.curate.report import MEMORIZE_BELOW, CurationReport, report_markdown
from potstill.curate.split import split_rows
from potstill.errors import InputError, ParamsError
from potstill.params import CurateParams, load_params
from potstill.tasks import EvalItem, eval_items

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())["curate"]


def params(**overrides) -> CurateParams:
    """The shipped curate params, decontamination off unless asked for, with overrides."""
    return CurateParams(**{**SHIPPED, "decontam_tasks": [], **overrides})


def row(i, reply, domain="d1", finish="stop", prompt=None, **extra):
    return {"id": f"r{i}", "domain": domain, "finish_reason": finish, **extra,
            "messages": [{"role": "user", "content": prompt or f"question {i}"},
                         {"role": "assistant", "content": reply}]}


def flags(rows, cur=None, items=()):
    curator = Curator(cur or params(), items)
    return [list(curator.flag(r)) for r in rows]


PROSE = ("Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar and oxygen. "
         "It happens in the chloroplasts, mostly in the leaves, and feeds almost every food chain on Earth.")
LONG = " ".join(f"token{i}" for i in range(600))  # 5,000+ chars, no repetition


def test_flags_empty_short_truncated_and_duplicates():
    rows = [row(0, "A fine answer."), row(1, "  "), row(2, "k"), row(3, "cut off", finish="length"),
            row(4, "A  FINE answer.", prompt="question 0")]
    assert flags(rows) == [[], ["empty"], ["too_short"], ["truncated"], ["duplicate"]]
    assert flags(rows, params(drop_truncated=False))[3] == []
    assert flags(rows, params(min_response_chars=0))[1:3] == [[], []]


@pytest.mark.parametrize(("reply", "reason"), [
    ("I'm sorry, but I can't help with writing that.", "refusal"),
    ("As an AI language model, I do not have opinions.", "refusal"),
    ("I\u2019m sorry, but I cannot share that.", "refusal"),  # curly apostrophe
    ("the cat sat on the mat " * 12, "repetition"),
    ("Paris is the capital of France. Paris is the capital of France. Paris is the capital of France.",
     "repetition"),
    ("The answer is \ufffd\ufffd caf\ufffd.", "encoding_junk"),
    ("Hello\x07 world, this rings a bell.", "encoding_junk"),
    ("@@## $$%% ^^&& **(( )) ~~!!", "encoding_junk"),
    ("Error: upstream request timed out", "endpoint_error"),
    ("Error code: 429 - {'error': {'message': 'Rate limit reached'}}", "endpoint_error"),
    ("Internal Server Error", "endpoint_error"),
    ("502 Bad Gateway", "endpoint_error"),
    ('{"error": {"message": "model overloaded", "code": 503}}', "endpoint_error"),
    ('{"object": "error", "errors": ["context length exceeded"]}', "endpoint_error"),
    ("<!DOCTYPE html>\n<html>\n<head>\n<title>503 Service Unavailable</title>", "endpoint_error"),
    ("HTTP/1.1 429 Too Many Requests\nRetry-After: 20", "endpoint_error"),
    ("Rate limit exceeded. Try again in 20 seconds.", "endpoint_error"),
    (LONG, "too_long"),
])
def test_each_filter_flags_what_it_should(reply, reason):
    assert reason in flags([row(0, reply)])[0]


@pytest.mark.parametrize("reply", [
    PROSE,
    "def reverse(text):\n    return ''.join(reversed(text))\n\nIt walks the string backwards.",
    "47 + 86 = 133",
    '"I can\'t stay," she said, and the door closed behind her before anyone could answer.',
    "A 500 Internal Server Error means the server hit a condition it did not expect.",
    "Too many requests at once can overwhelm a small server, so queue them.",
    "Errors in Python are raised with `raise` and caught with `try`/`except`.",
    '{"name": "Ada", "age": 36} is a JSON object with two keys.',
    "Le café est une boisson préparée à partir des grains torréfiés du caféier.",
    "光合作用是植物利用阳光把水和二氧化碳变成糖和氧气的过程。",
    "1. Sleep well.\n2. Eat well.\n3. Move every day.\n\t- even a short walk counts.",
])
def test_good_replies_pass_every_filter(reply):
    assert flags([row(0, reply)]) == [[]]


@pytest.mark.parametrize(("reply", "switch"), [
    ("I'm sorry, but I can't help with that.", {"drop_refusals": False}),
    ("the cat sat on the mat " * 12, {"max_repeated_ngram_ratio": None}),
    ("The answer is \ufffd.", {"drop_encoding_junk": False}),
    ("Error: upstream request timed out", {"drop_endpoint_errors": False}),
    (LONG, {"max_response_chars": None}),
])
def test_each_filter_can_be_switched_off(reply, switch):
    assert flags([row(0, reply)], params(**switch)) == [[]]


@pytest.mark.parametrize(("reply", "answer", "wrong"), [
    ("47 + 86 = 133.", "133", False),
    ("The answer to 47 + 86 is 134.", "133", True),
    ("He runs 4 * 400 * 7 = 11,200 metres a week.", "11200", False),
    ("That is 11,200.00 m in total.", 11200, False),
    ("27 - 42 = -15", "-15", False),
    ("I do not know how to add these.", "133", True),   # no number at all
    ("It is Canberra.", "Canberra", False),             # not a numeric answer: not checked
])
def test_wrong_answers_are_flagged_by_the_last_number(reply, answer, wrong):
    assert ("wrong_answer" in flags([row(0, reply, answer=answer)])[0]) is wrong
    assert flags([row(0, reply, answer=answer)], params(check_answers=False)) == [[]]


def test_near_duplicate_paraphrase_is_caught_and_the_first_copy_kept():
    original = row(0, PROSE, prompt="Explain photosynthesis in two sentences.")
    paraphrase = row(1, PROSE.replace("turn", "convert").replace("mostly", "largely")
                     .replace("almost every", "nearly every"), prompt="Explain photosynthesis in two sentences.")
    related = row(2, "Plants need sunlight to grow, and most of their food is made in the leaves, "
                     "which is why a plant kept in the dark turns yellow.",
                  prompt="Why do plants need light?")
    assert flags([original, paraphrase, related]) == [[], ["near_duplicate"], []]
    assert flags([original, paraphrase], params(near_dup_threshold=None)) == [[], []]
    # A near-copy of a dropped row is the copy worth keeping.
    assert flags([row(0, PROSE, finish="length"), paraphrase]) == [["truncated"], []]


def test_near_duplicates_estimate_jaccard():
    near = NearDuplicates(threshold=0.6, num_perm=128, shingle_size=2)
    a = near.signature(PROSE)
    near.add("a", a)
    found = near.find(near.signature(PROSE.replace("mostly", "largely")))
    assert found is not None and found[0] == "a" and 0.75 < found[1] < 1.0
    assert near.find(near.signature("An entirely different sentence about sailing boats at dawn.")) is None


def test_decontamination_flags_eval_items_and_spares_partial_overlap():
    items = [EvalItem("t", "q1", "The capital of Australia is Canberra"),
             EvalItem("t", "q2", "Write the next number. 2, 3, 4, 5 11, 12, 13, 14 1, 2, 3, 4")]
    decontam = Decontaminator(items, ngram=6, threshold=0.5)
    match = decontam.match("What is the capital of Australia?\nThe capital of Australia is Canberra.")
    assert match and match[0].item_id == "q1" and match[1] == 1.0
    assert decontam.match("The capital of Australia is a planned city.") is None  # 5 of 6 words
    # The worked examples, query and answer without the instruction: 7 of the item's 11 6-grams.
    assert decontam.match("2, 3, 4, 5\n11, 12, 13, 14\n1, 2, 3, 4")[0].item_id == "q2"
    rows = [row(0, "The capital of Australia is Canberra.", prompt="Capital of Australia?"), row(1, PROSE)]
    assert flags(rows, items=items) == [["contaminated"], []]


def write_task(task_dir: Path, items: list[dict]) -> None:
    """A one-task lm-eval folder whose prompt template differs from the raw JSON fields."""
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / "planted.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    (task_dir / "planted.yaml").write_text(yaml.safe_dump({
        "task": "planted", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(task_dir / "planted.jsonl")}},
        "test_split": "test", "output_type": "generate_until",
        "doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "exact_match"}], "metadata": {"version": 1.0},
    }))


PLANTED = {"id": "p-1", "question": "Which river flows through the city of Vienna",
           "answer": "The Danube"}


def test_items_are_read_through_the_task_definitions(tmp_path):
    write_task(tmp_path / "tasks", [PLANTED])
    (item,) = eval_items(tmp_path / "tasks", ["planted"], "curate")
    # The template's words ("Question:", "Answer:") prove lm-eval's doc_to_text built the text.
    assert item == EvalItem("planted", "p-1",
                            "Question: Which river flows through the city of Vienna\nAnswer: The Danube", "The Danube")
    with pytest.raises(InputError, match=r"curate.decontam_tasks: \['nope'\] not defined"):
        list(eval_items(tmp_path / "tasks", ["nope"], "curate"))
    with pytest.raises(InputError, match="curate.decontam_task_dir"):
        list(eval_items(tmp_path / "missing", ["planted"], "curate"))


def test_shipped_tasks_are_read_through_lm_eval(monkeypatch):
    monkeypatch.chdir(ROOT)  # the shipped YAMLs name their data files relative to the repo root
    items = list(eval_items(SHIPPED["decontam_task_dir"], SHIPPED["decontam_tasks"], "curate"))
    by_id = {i.item_id: i for i in items}
    assert len(items) == 620
    assert by_id["mc-0000"].text == "The opposite of hot is cold"  # prompt + gold choice, not the label
    assert by_id["gen-0000"].text.endswith("1, 2, 3, 4")


SHIPPED_PROMPTS = {json.loads(line)["id"]: json.loads(line) for line in (ROOT / "data/prompts.jsonl").open()}


@pytest.fixture(scope="module")
def shipped_decontaminator():
    import os

    here = os.getcwd()
    os.chdir(ROOT)  # the shipped YAMLs name their data files relative to the repo root
    try:
        items = list(eval_items(SHIPPED["decontam_task_dir"], SHIPPED["decontam_tasks"], "curate"))
    finally:
        os.chdir(here)
    return Decontaminator(items, SHIPPED["decontam_ngram"], SHIPPED["decontam_threshold"], key_words=True)


@pytest.mark.parametrize("prompt_id, answer, item", [
    ("factual-021", "Ottawa is the capital of Canada.", {"mc-0203", "gen-0246"}),
    ("factual-044", "Nairobi is the capital city of Kenya.", {"mc-0197", "gen-0240"}),
])
def test_shipped_prompts_that_restate_an_eval_item_in_other_words_are_caught(
        shipped_decontaminator, prompt_id, answer, item):
    text = f"{SHIPPED_PROMPTS[prompt_id]['prompt']}\n{answer}"
    assert shipped_decontaminator.match(text) is None  # no 6-gram shared: the old check kept these rows
    found = shipped_decontaminator.check(text)
    assert found["contaminated"] and found["how"] == "key words" and found["item"].item_id in item


@pytest.mark.parametrize("text", [
    "Lima is the capital of which country? Peru.",
    "Name the country whose capital is Canberra. That is Australia.",
    "Q: Ottawa? A: It is Canada's capital.",
])
def test_planted_paraphrases_are_caught(shipped_decontaminator, text):
    assert shipped_decontaminator.check(text)["contaminated"]


def test_near_misses_are_reported_not_dropped_and_unrelated_rows_pass(shipped_decontaminator):
    near = shipped_decontaminator.check("Canada is a large country with many lakes.")  # Canada, not Ottawa
    assert near is None or not near["contaminated"]
    near = shipped_decontaminator.check("I visited Ottawa, the city with the Rideau Canal, in Canada's winter? "
                                        "No: I went to Toronto.")
    assert near["contaminated"]  # both key words present: a deliberately conservative check
    assert shipped_decontaminator.check("Photosynthesis turns light, water and carbon dioxide into sugar.") is None
    # The names of a next-month item's question, but not its answer (February): nothing given away.
    history = "The First World War began on the 11th of November 2014 and ended on the 3rd of December 2019."
    assert shipped_decontaminator.check(history) is None
    items = [EvalItem("t", "q1", "The capital of Canada is Ottawa"), EvalItem("t", "q2", "The capital of Peru is Lima"),
             EvalItem("t", "q3", "The capital of Chile is Santiago"),
             EvalItem("t", "q5", "The opposite of inside is outside")]
    rows = [row(0, "Peru is in South America.", prompt="Tell me about Peru and its capital Lima."),
            row(1, "It borders Argentina.", prompt="Where is Chile?")]
    decontam = Decontaminator(items, ngram=6, threshold=0.5)
    assert decontam.check(dialogue_text(rows[0]))["contaminated"]
    assert decontam.check(dialogue_text(rows[1])) is None  # one name of an item's two: nothing
    assert decontam.check("Three switches outside a room control bulbs inside it.") is None  # not names
    everest = Decontaminator([*items, EvalItem("t", "q4", "Everest lies in Nepal, Tibet and Asia")], 6, 0.5)
    assert everest.check("Nepal and Tibet lie side by side.") is None  # 2 of its 4 names
    miss = everest.check("Everest: Nepal and Tibet.")  # 3 of 4: kept, and listed
    assert not miss["contaminated"] and miss["detail"] == "all key words of t item q4 but asia"


def test_split_is_deterministic_disjoint_and_stratified():
    rows = [row(i, "x", domain=f"d{i % 3}") for i in range(60)]
    a = split_rows(rows, 0.1, 0.2, seed=0)
    b = split_rows(list(reversed(rows)), 0.1, 0.2, seed=0)
    assert {k: [r["id"] for r in v] for k, v in a.items()} == {k: [r["id"] for r in v] for k, v in b.items()}
    ids = [r["id"] for part in a.values() for r in part]
    assert len(ids) == len(set(ids)) == 60
    assert (len(a["test"]), len(a["val"])) == (12, 6)
    assert {r["domain"] for r in a["test"]} == {"d0", "d1", "d2"}
    assert split_rows(rows, 0.1, 0.2, seed=1)["test"] != a["test"]



def test_a_hash_split_never_moves_a_row_when_the_data_grows_and_a_stratified_one_does():
    def assignment(rows, method):
        return {r["id"]: name for name, part in split_rows(rows, 0.1, 0.1, 0, method).items() for r in part}

    first = [row(i, "x", domain=f"d{i % 3}") for i in range(300)]
    grown = first + [row(i, "x", domain=f"d{i % 4}") for i in range(300, 1200)]
    before, after = assignment(first, "hash"), assignment(grown, "hash")
    assert all(after[i] == split for i, split in before.items())
    # The shares are met on average: 1,200 rows, 10% each, well within binomial noise (sd ~10 rows).
    counts = {name: list(after.values()).count(name) for name in ("train", "val", "test")}
    assert 80 <= counts["test"] <= 160 and 80 <= counts["val"] <= 160
    assert assignment(list(reversed(grown)), "hash") == after
    # Why hash exists: the stratified split deals shares of the whole, so growing the data moves rows.
    before, after = assignment(first, "stratified"), assignment(grown, "stratified")
    assert any(after[i] != split for i, split in before.items())


def test_report_counts_examples_and_markdown():
    report = CurationReport()
    for r, why in [(row(0, "ok answer"), {}), (row(1, ""), {"empty": "no text"}),
                   (row(2, ""), {"empty": "no text"}), (row(3, "x|y"), {"refusal": "contains 'a|b'"})]:
        report.add(r, why)
    figures = report.figures({"train": 1, "val": 0, "test": 0}, ["few rows"])
    assert figures["kept"] == 1 and figures["dropped_rows"] == 3
    assert figures["dropped"] == {"empty": 2, "refusal": 1}
    assert [e["id"] for e in figures["examples"]["empty"]] == ["r1", "r2"]
    text = report_markdown(figures)
    assert "| empty | 2 | r1: no text<br>r2: no text |" in text
    assert "contains 'a\\|b'" in text and "**Warning:** few rows" in text


def test_new_params_are_validated(tmp_path):
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    for bad, expected in [({"max_response_chars": 1}, "must exceed min_response_chars"),
                          ({"near_dup_threshold": 0.2}, "curate.near_dup_threshold"),
                          ({"decontam_ngram": 1}, "curate.decontam_ngram"),
                          ({"min_examples": -1}, "curate.min_examples"),
                          ({"decontam_task": ["x"]}, "curate.decontam_task: unknown key")]:
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump({**shipped, "curate": {**shipped["curate"], **bad}}))
        with pytest.raises(ParamsError, match=expected):
            load_params(path, "curate")


# ---------------------------------------------------------------------------------------------
# The stage, end to end through its CLI
# ---------------------------------------------------------------------------------------------

def stage_inputs(tmp_path: Path, **overrides) -> tuple[Path, Path, list[dict]]:
    """Write a params.yaml, a planted eval task and a responses.jsonl with one row per problem."""
    write_task(tmp_path / "tasks", [PLANTED])
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    shipped["curate"].update({"decontam_tasks": ["planted"], "decontam_task_dir": str(tmp_path / "tasks"),
                              "val_fraction": 0.2, "test_fraction": 0.2,
                              "split": "stratified", **overrides})  # exact shares on 11 rows
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(shipped))
    notes = [
        ("volcanoes", "Magma rises through cracks in the crust and erupts as lava, ash and gas."),
        ("tides", "The moon's gravity pulls the oceans into two bulges that the Earth turns beneath."),
        ("rainbows", "Raindrops bend sunlight and split it into colours, each leaving at its own angle."),
        ("glaciers", "Snow that never melts is pressed into ice, which creeps downhill under its weight."),
        ("comets", "Balls of dust and ice grow glowing tails as the Sun warms them on their orbits."),
        ("coral reefs", "Tiny animals build limestone skeletons that pile up over centuries into reefs."),
        ("deserts", "Places that receive less than about 250 millimetres of rain a year count as deserts."),
        ("thunder", "Lightning heats air so fast that it expands with a bang we hear as thunder."),
        ("magnets", "Aligned electron spins inside iron make a field that attracts other iron objects."),
        ("bees", "Bees carry pollen between flowers while collecting nectar that they turn into honey."),
    ]
    rows = [row(i, reply, domain=f"d{i % 2}", prompt=f"Tell me about {topic}.")
            for i, (topic, reply) in enumerate(notes)]
    rows += [
        row(20, rows[0]["messages"][1]["content"].upper(), prompt="TELL ME ABOUT VOLCANOES."),  # duplicate
        row(21, rows[1]["messages"][1]["content"].replace("two bulges", "a pair of bulges"),
            prompt="Tell me about tides."),                                                   # near_duplicate
        row(22, "I'm sorry, but I can't answer that."),                                       # refusal
        row(23, "The river that flows through the city of", finish="length"),                 # truncated
        row(24, "47 + 86 = 134", domain="math", answer="133"),                               # wrong_answer
        row(25, "47 + 86 = 133", domain="math", answer="133"),                               # kept
        row(26, "Answer: The Danube, of course.",
            prompt="Question: Which river flows through the city of Vienna?"),               # contaminated
    ]
    generated = tmp_path / "generated"
    generated.mkdir()
    (generated / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "params.yaml", generated, rows


def invoke(tmp_path, params_path, generated):
    from stages.curate import app

    return CliRunner().invoke(app, ["--params", str(params_path), "--generated", str(generated),
                                    "--out", str(tmp_path / "curated"), "--metrics", str(tmp_path / "m.json")])


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_stage_cli_end_to_end(tmp_path):
    params_path, generated, rows = stage_inputs(tmp_path)
    result = invoke(tmp_path, params_path, generated)
    assert result.exit_code == 0, result.output
    assert f"(< {MEMORIZE_BELOW}): the student will memorize" in result.output

    out = tmp_path / "curated"
    flagged = {f["id"]: f["reasons"] for f in read(out / "flagged.jsonl")}
    assert flagged == {"r20": ["duplicate"], "r21": ["near_duplicate"], "r22": ["refusal"],
                       "r23": ["truncated"], "r24": ["wrong_answer"], "r26": ["contaminated"]}
    splits = {name: read(out / f"{name}.jsonl") for name in ("train", "val", "test")}
    kept = [r for part in splits.values() for r in part]
    assert sorted(r["id"] for r in kept) == sorted(r["id"] for r in rows if r["id"] not in flagged)
    assert all(r == next(x for x in rows if x["id"] == r["id"]) for r in kept)  # copied unchanged
    assert [len(splits[n]) for n in ("train", "val", "test")] == [7, 2, 2]

    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["rows_in"] == 17 and metrics["kept"] == 11 and metrics["dropped_rows"] == 6
    assert metrics["dropped"]["contaminated"] == 1
    assert metrics["examples"]["contaminated"][0]["detail"] == "100% of planted item p-1 n-grams"
    assert metrics["examples"]["near_duplicate"][0]["detail"].startswith("of r1 (Jaccard")
    report = (out / "report.md").read_text()
    assert "| wrong_answer | 1 | r24: expected 133, last number is 134 |" in report
    assert "| train | 7 |" in report


def test_min_examples_stops_the_stage_naming_the_param(tmp_path):
    params_path, generated, _ = stage_inputs(tmp_path, min_examples=50)
    result = invoke(tmp_path, params_path, generated)
    assert result.exit_code == 2
    assert "curate.min_examples: only 11 rows kept of 17 (< 50)" in result.output
    assert not (tmp_path / "curated" / "train.jsonl").exists()
    assert (tmp_path / "curated" / "report.md").exists()  # so the user can see why rows went


def test_bad_rows_name_the_file_and_line(tmp_path):
    params_path, generated, rows = stage_inputs(tmp_path)
    responses = generated / "responses.jsonl"
    responses.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"id": "x", "messages": "hi"}) + "\n")
    result = invoke(tmp_path, params_path, generated)
    assert result.exit_code == 2
    assert f"{responses}:2: \"messages\" must be a non-empty list" in result.output
    responses.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[0]) + "\n")
    result = invoke(tmp_path, params_path, generated)
    assert result.exit_code == 2 and "id 'r0' appears twice" in result.output
