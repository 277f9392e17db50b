"""Build the two shipped evaluation tasks (standard library only, deterministic).

    python data/eval_tasks/build_tasks.py

writes, next to this script:

* ``potstill_mc.jsonl``  -- 4-way multiple choice, scored by log-likelihood (chance 25%).
  Fields: ``id``, ``category``, ``prompt`` (a sentence to complete), ``choices`` (4 words),
  ``label`` (index of the gold choice in ``choices``), ``answer`` (the gold word).
* ``potstill_gen.jsonl`` -- short-answer generation, scored by exact match (chance ~0).
  Fields: ``id``, ``category``, ``query`` (the test line), ``prompt`` (instruction + three fixed
  worked examples of the same category + the query), ``answer``.

Every item is very easy world knowledge or a mechanical transform, written by hand below; items
are never filtered by what any model gets right. Distractors come from the same category's answer
pool, minus words that would also be correct (conflict groups). Few-shot examples of the
generation task are drawn from a separate pool and never appear as test items.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261101
N_CHOICES = 4

# ---------------------------------------------------------------------------------------------
# Shared vocabulary
# ---------------------------------------------------------------------------------------------

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
]  # fmt: skip

# (word, opposite, axis). Distractors never come from the same axis, so that no distractor is
# also an acceptable opposite (e.g. "short" is not offered against "long" when "tall" is gold).
ANTONYMS = [
    ("hot", "cold", "temperature"),
    ("big", "small", "size"),
    ("tall", "short", "size"),
    ("thick", "thin", "size"),
    ("up", "down", "vertical"),
    ("top", "bottom", "vertical"),
    ("high", "low", "vertical"),
    ("day", "night", "light"),
    ("black", "white", "light"),
    ("light", "dark", "light"),
    ("fast", "slow", "speed"),
    ("happy", "sad", "mood"),
    ("laugh", "cry", "mood"),
    ("love", "hate", "mood"),
    ("open", "closed", "open"),
    ("wet", "dry", "wet"),
    ("full", "empty", "full"),
    ("hard", "soft", "hard"),
    ("rich", "poor", "money"),
    ("buy", "sell", "money"),
    ("early", "late", "time"),
    ("first", "last", "order"),
    ("in", "out", "inside"),
    ("inside", "outside", "inside"),
    ("left", "right", "side"),
    ("front", "back", "side"),
    ("good", "bad", "good"),
    ("win", "lose", "win"),
    ("push", "pull", "push"),
    ("yes", "no", "yes"),
    ("true", "false", "yes"),
    ("boy", "girl", "sex"),
    ("man", "woman", "sex"),
    ("king", "queen", "sex"),
    ("north", "south", "compass"),
    ("east", "west", "compass"),
    ("clean", "dirty", "clean"),
    ("strong", "weak", "strong"),
    ("loud", "quiet", "loud"),
    ("near", "far", "distance"),
    ("alive", "dead", "alive"),
    ("asleep", "awake", "sleep"),
    ("always", "never", "frequency"),
    ("more", "less", "amount"),
    ("friend", "enemy", "friend"),
    ("question", "answer", "question"),
]

# Regular and irregular plurals. Distractors are other forms of the same word.
PLURALS = [
    ("cat", "cats"), ("dog", "dogs"), ("book", "books"), ("tree", "trees"), ("car", "cars"),
    ("bird", "birds"), ("apple", "apples"), ("house", "houses"), ("girl", "girls"),
    ("hand", "hands"), ("door", "doors"), ("chair", "chairs"), ("ship", "ships"),
    ("box", "boxes"), ("bus", "buses"), ("dish", "dishes"), ("watch", "watches"),
    ("glass", "glasses"), ("fox", "foxes"), ("church", "churches"), ("brush", "brushes"),
    ("baby", "babies"), ("city", "cities"), ("lady", "ladies"), ("story", "stories"),
    ("party", "parties"), ("family", "families"), ("cherry", "cherries"),
    ("man", "men"), ("woman", "women"), ("child", "children"), ("mouse", "mice"),
    ("foot", "feet"), ("tooth", "teeth"), ("goose", "geese"), ("person", "people"),
    ("knife", "knives"), ("leaf", "leaves"), ("wolf", "wolves"), ("wife", "wives"),
]  # fmt: skip

COLORS = ["red", "green", "blue", "yellow", "white", "black", "brown", "orange", "pink", "purple"]
# (subject, gold color, other colors that would also be defensible and so are never distractors)
COLOR_ITEMS = [
    ("grass", "green", ["brown", "yellow"]),
    ("snow", "white", []),
    ("the sky on a sunny day", "blue", ["white"]),
    ("coal", "black", []),
    ("a ripe banana", "yellow", ["brown"]),
    ("blood", "red", []),
    ("a lemon", "yellow", ["green"]),
    ("milk", "white", []),
    ("a ripe tomato", "red", ["green", "orange"]),
    ("chocolate", "brown", ["white", "black"]),
    ("a carrot", "orange", ["purple", "yellow"]),
    ("a strawberry", "red", ["pink"]),
    ("the sea", "blue", ["green"]),
    ("a crow", "black", []),
    ("a polar bear", "white", []),
    ("a fire truck", "red", ["yellow"]),
    ("a pumpkin", "orange", ["yellow", "white"]),
    ("a frog", "green", ["brown", "yellow"]),
    ("a flamingo", "pink", ["orange", "white"]),
    ("an eggplant", "purple", ["black"]),
    ("a lime", "green", ["yellow"]),
    ("a cloud", "white", []),
    ("soil", "brown", ["black"]),
    ("the night sky", "black", ["blue", "purple"]),
]

# (animal, sound)
SOUNDS = [
    ("cow", "moo"), ("cat", "meow"), ("duck", "quack"), ("dog", "woof"), ("sheep", "baa"),
    ("pig", "oink"), ("owl", "hoot"), ("snake", "hiss"), ("lion", "roar"), ("horse", "neigh"),
    ("frog", "croak"), ("bee", "buzz"), ("mouse", "squeak"), ("donkey", "bray"),
    ("wolf", "howl"), ("crow", "caw"), ("turkey", "gobble"), ("goose", "honk"),
]  # fmt: skip

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"), ("England", "London"),
    ("Egypt", "Cairo"), ("Greece", "Athens"), ("Portugal", "Lisbon"), ("Ireland", "Dublin"),
    ("Austria", "Vienna"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Denmark", "Copenhagen"), ("Finland", "Helsinki"), ("Poland", "Warsaw"),
    ("Hungary", "Budapest"), ("the Netherlands", "Amsterdam"), ("Belgium", "Brussels"),
    ("Thailand", "Bangkok"), ("South Korea", "Seoul"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
    ("Cuba", "Havana"), ("the Czech Republic", "Prague"), ("Iran", "Tehran"), ("Iraq", "Baghdad"),
    ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Turkey", "Ankara"),
]  # fmt: skip

# (thing, verb, verbs that would also be right)
USES = [
    ("a knife", "cut", []),
    ("a pen", "write", []),
    ("a broom", "sweep", ["clean"]),
    ("a cup", "drink", []),
    ("a bed", "sleep", []),
    ("a chair", "sit", []),
    ("soap", "wash", ["clean"]),
    ("a towel", "dry", []),
    ("a ladder", "climb", []),
    ("a shovel", "dig", []),
    ("a needle", "sew", []),
    ("an oven", "bake", ["cook"]),
    ("a book", "read", []),
    ("a spoon", "eat", ["stir"]),
    ("a key", "unlock", []),
    ("a telephone", "call", []),
    ("a mop", "clean", ["wash"]),
    ("a bicycle", "ride", []),
    ("your eyes", "see", []),
    ("your ears", "hear", []),
    ("your nose", "smell", []),
    ("your tongue", "taste", []),
    ("your teeth", "chew", ["eat"]),
    ("your legs", "walk", ["climb"]),
    ("a pencil", "draw", ["write"]),
]

# (subject, kind). "A rose is a kind of flower."
KIND_OF = {
    "flower": ["a rose", "a tulip", "a daisy", "a lily"],
    "tree": ["an oak", "a pine", "a maple", "a birch"],
    "fruit": ["an apple", "a banana", "a grape", "a cherry"],
    "vegetable": ["a carrot", "a potato", "an onion", "a cabbage"],
    "fish": ["a salmon", "a tuna", "a trout", "a cod"],
    "bird": ["an eagle", "a sparrow", "a parrot", "a robin"],
    "vehicle": ["a car", "a bus", "a truck", "a train"],
    "tool": ["a hammer", "a saw", "a wrench", "a screwdriver"],
    "color": ["red", "blue", "green", "purple"],
    "sport": ["soccer", "tennis", "basketball", "golf"],
    "insect": ["an ant", "a bee", "a butterfly", "a beetle"],
    "planet": ["Mars", "Venus", "Jupiter", "Saturn"],
    "drink": ["milk", "juice", "tea", "coffee"],
    "metal": ["iron", "gold", "copper", "silver"],
    "language": ["French", "Spanish", "German", "Chinese"],
    "instrument": ["a piano", "a guitar", "a violin", "a drum"],
}
# Kinds that are also defensible for a subject (never offered as distractors for it).
KIND_CONFLICTS = {"gold": ["color"], "silver": ["color"], "a tuna": ["vegetable"]}
KIND_CONFLICTS["a bee"] = ["bird"]  # flies, but keep the distinction clean
KIND_CONFLICTS["a butterfly"] = ["bird"]


# ---------------------------------------------------------------------------------------------
# Multiple choice
# ---------------------------------------------------------------------------------------------


def _mc_rows() -> list[dict]:
    """(category, prompt, gold, distractor candidates) before choices are drawn."""
    rows: list[tuple[str, str, str, list[str]]] = []

    axis_of = {}
    for a, b, axis in ANTONYMS:
        axis_of[a] = axis_of[b] = axis
    words = [w for a, b, _ in ANTONYMS for w in (a, b)]
    for a, b, axis in ANTONYMS:
        for src, gold in ((a, b), (b, a)):
            pool = [w for w in words if axis_of[w] != axis]
            rows.append(("antonym", f"The opposite of {src} is", gold, pool))

    for sing, plur in PLURALS:
        forms = [sing + "s", sing + "es", sing + "en", sing]
        if sing.endswith("y"):
            forms.append(sing[:-1] + "ies")
        if sing.endswith("f") or sing.endswith("fe"):
            forms.append(sing.rstrip("e").rstrip("f") + "ves")
        pool = sorted({f for f in forms if f != plur})
        rows.append(("plural", f"One {sing}, two", plur, pool))

    for subject, gold, also in COLOR_ITEMS:
        pool = [c for c in COLORS if c != gold and c not in also]
        rows.append(("color", f"The color of {subject} is", gold, pool))

    for animal, sound in SOUNDS:
        pool = [s for _, s in SOUNDS if s != sound]
        rows.append(("animal_sound", f"The {animal} says", sound, pool))

    for country, city in CAPITALS:
        pool = [c for _, c in CAPITALS if c != city]
        rows.append(("capital", f"The capital of {country} is", city, pool))

    for seq, name in ((DAYS, "day"), (MONTHS, "month")):
        n = len(seq)
        for i, item in enumerate(seq):
            rows.append(
                (
                    f"{name}_order",
                    f"The {name} after {item} is",
                    seq[(i + 1) % n],
                    [x for x in seq if x not in (item, seq[(i + 1) % n])],
                )
            )
            rows.append(
                (
                    f"{name}_order",
                    f"The {name} before {item} is",
                    seq[(i - 1) % n],
                    [x for x in seq if x not in (item, seq[(i - 1) % n])],
                )
            )

    for n in range(1, 20):
        near = [NUMBER_WORDS[k] for k in range(max(0, n - 4), min(21, n + 5)) if k != n]
        rows.append(
            (
                "number_order",
                f"The number after {NUMBER_WORDS[n]} is",
                NUMBER_WORDS[n + 1],
                [w for w in near if w != NUMBER_WORDS[n + 1]],
            )
        )
        rows.append(
            (
                "number_order",
                f"The number before {NUMBER_WORDS[n]} is",
                NUMBER_WORDS[n - 1],
                [w for w in near if w != NUMBER_WORDS[n - 1]],
            )
        )

    for thing, verb, also in USES:
        pool = [v for _, v, _ in USES if v != verb and v not in also]
        rows.append(("use", f"You use {thing} to", verb, pool))

    for kind, subjects in KIND_OF.items():
        for subject in subjects:
            bad = set(KIND_CONFLICTS.get(subject, [])) | {kind}
            pool = [k for k in KIND_OF if k not in bad]
            rows.append(("kind_of", f"{subject[0].upper()}{subject[1:]} is a kind of", kind, pool))
    return rows


def build_mc() -> list[dict]:
    rng = random.Random(SEED)
    out = []
    for i, (category, prompt, gold, pool) in enumerate(_mc_rows()):
        pool = sorted(set(pool) - {gold})
        assert len(pool) >= N_CHOICES - 1, (prompt, pool)
        distractors = rng.sample(pool, N_CHOICES - 1)
        label = i % N_CHOICES  # exactly balanced gold positions
        choices = distractors[:label] + [gold] + distractors[label:]
        out.append(
            {
                "id": f"mc-{i:04d}",
                "category": category,
                "prompt": prompt,
                "choices": choices,
                "label": label,
                "answer": gold,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# Generation (exact match)
# ---------------------------------------------------------------------------------------------

# Regular verbs for the past-tense transform: (verb, past).
PAST = [
    ("walk", "walked"), ("jump", "jumped"), ("play", "played"), ("talk", "talked"),
    ("look", "looked"), ("open", "opened"), ("help", "helped"), ("call", "called"),
    ("clean", "cleaned"), ("cook", "cooked"), ("kick", "kicked"), ("paint", "painted"),
    ("wash", "washed"), ("watch", "watched"), ("climb", "climbed"), ("rain", "rained"),
    ("start", "started"), ("turn", "turned"), ("want", "wanted"), ("work", "worked"),
    ("fill", "filled"), ("pull", "pulled"), ("push", "pushed"), ("rest", "rested"),
]  # fmt: skip
PAST_SHOTS = [("ask", "asked"), ("learn", "learned"), ("visit", "visited")]

PLURAL_GEN = [s for s in PLURALS if s[1] == s[0] + "s"]  # regular -s plurals only
PLURAL_SHOTS = [("cup", "cups"), ("hat", "hats"), ("pen", "pens")]

COPY_WORDS = [
    "apple", "river", "garden", "window", "pencil", "rabbit", "yellow", "summer", "orange",
    "candle", "bottle", "planet", "doctor", "music", "forest", "silver", "monkey", "butter",
    "island", "rocket",
]  # fmt: skip
COPY_SHOTS = [("table", "table"), ("flower", "flower"), ("guitar", "guitar")]

CAPITAL_SHOTS = [("Mexico", "Mexico City"), ("Argentina", "Buenos Aires"), ("Chile", "Santiago")]

GEN_SPECS: dict[str, str] = {
    "count": "Write the next number.",
    "count_by_two": "Write the next number.",
    "count_by_ten": "Write the next number.",
    "next_day": "Write the next day of the week.",
    "next_month": "Write the next month.",
    "next_letter": "Write the next letter of the alphabet.",
    "addition": "Add the numbers.",
    "word_to_digit": "Write the number in digits.",
    "digit_to_word": "Write the number in words.",
    "plural": "Write the plural of the word.",
    "past_tense": "Write the past tense of the verb.",
    "copy": "Repeat the word.",
    "capital": "Write the capital city of the country.",
}


def _gen_items() -> dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
    """category -> (three few-shot (query, answer) pairs, test (query, answer) pairs)."""
    items: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {}

    def seq(xs: list) -> str:
        return ", ".join(str(x) for x in xs) + ","

    shots_starts = [2, 11, 30]
    items["count"] = (
        [(seq(range(s, s + 3)), str(s + 3)) for s in shots_starts],
        [(seq(range(s, s + 3)), str(s + 3)) for s in range(1, 60, 2) if s not in shots_starts],
    )
    items["count_by_two"] = (
        [(seq(range(s, s + 6, 2)), str(s + 6)) for s in (2, 7, 21)],
        [(seq(range(s, s + 6, 2)), str(s + 6)) for s in range(4, 44, 3) if s not in (7, 21)],
    )
    items["count_by_ten"] = (
        [(seq(range(s, s + 30, 10)), str(s + 30)) for s in (10, 5, 40)],
        [(seq(range(s, s + 30, 10)), str(s + 30)) for s in (20, 30, 50, 60, 1, 2, 3, 4, 6, 8)],
    )
    for name, xs in (("next_day", DAYS), ("next_month", MONTHS)):
        n = len(xs)
        allq = [(seq([xs[(i + k) % n] for k in range(3)]), xs[(i + 3) % n]) for i in range(n)]
        # Every three-item window is a test item, so the few-shot examples use two-item windows.
        shots = [(seq([xs[(i + k) % n] for k in range(2)]), xs[(i + 2) % n]) for i in (0, 3, 5)]
        items[name] = (shots, allq)
    letters = "abcdefghijklmnopqrstuvwxyz"
    letter_shots = [0, 7, 15]
    items["next_letter"] = (
        [(seq(letters[i : i + 3]), letters[i + 3]) for i in letter_shots],
        [(seq(letters[i : i + 3]), letters[i + 3]) for i in range(23) if i not in letter_shots],
    )
    add_shots = [(1, 1), (3, 4), (5, 2)]
    items["addition"] = (
        [(f"{a} + {b} =", str(a + b)) for a, b in add_shots],
        [
            (f"{a} + {b} =", str(a + b))
            for a in range(1, 9)
            for b in range(1, 9)
            if a + b <= 9 and (a, b) not in add_shots
        ],
    )
    w2d_shots = [3, 8, 15]
    items["word_to_digit"] = (
        [(NUMBER_WORDS[k], str(k)) for k in w2d_shots],
        [(NUMBER_WORDS[k], str(k)) for k in range(21) if k not in w2d_shots],
    )
    d2w_shots = [2, 9, 14]
    items["digit_to_word"] = (
        [(str(k), NUMBER_WORDS[k]) for k in d2w_shots],
        [(str(k), NUMBER_WORDS[k]) for k in range(21) if k not in d2w_shots],
    )
    items["plural"] = (PLURAL_SHOTS, PLURAL_GEN)
    items["past_tense"] = (PAST_SHOTS, PAST)
    items["copy"] = (COPY_SHOTS, [(w, w) for w in COPY_WORDS])
    items["capital"] = (CAPITAL_SHOTS, CAPITALS)
    return items


def gen_prompt(instruction: str, shots: list[tuple[str, str]], query: str) -> str:
    lines = [instruction, ""]
    # Sequences are continued as lists ("Monday, Tuesday," -> " Wednesday"): the model tends to
    # go on listing, so the task stops generation at a comma as well as at a newline (no answer
    # contains either). Arithmetic ends in "=", transforms in "->".
    lines += [f"{q} {a}" if q.endswith(("=", ",")) else f"{q} -> {a}" for q, a in shots]
    lines.append(query if query.endswith(("=", ",")) else f"{query} ->")
    return "\n".join(lines)


def build_gen() -> list[dict]:
    out = []
    items = _gen_items()
    assert set(items) == set(GEN_SPECS), set(items) ^ set(GEN_SPECS)
    for category, (shots, tests) in items.items():
        shot_queries = {q for q, _ in shots}
        for query, answer in tests:
            assert query not in shot_queries, (category, query)
            out.append(
                {
                    "id": f"gen-{len(out):04d}",
                    "category": category,
                    "query": query,
                    "prompt": gen_prompt(GEN_SPECS[category], shots, query),
                    "answer": answer,
                }
            )
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")


def main() -> None:
    mc, gen = build_mc(), build_gen()
    for name, rows in (("potstill_mc", mc), ("potstill_gen", gen)):
        prompts = [r["prompt"] for r in rows]
        assert len(set(prompts)) == len(prompts), f"duplicate prompts in {name}"
        write_jsonl(HERE / f"{name}.jsonl", rows)
        cats: dict[str, int] = {}
        for r in rows:
            cats[r["category"]] = cats.get(r["category"], 0) + 1
        print(f"{name}: {len(rows)} items {cats}")


if __name__ == "__main__":
    main()
