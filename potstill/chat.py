"""Chat rows as token ids: the chat template renders the prompt, the loss sees only assistant tokens.

Also the checks that a tokenizer can do this (`chat_template_problem`) and that two tokenizers give
the same ids, as logit KD needs (`tokenizer_differences`).
"""

from __future__ import annotations

from pathlib import Path


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Return the ids of the chat-templated `messages` (the turns before a reply) up to the generation prompt."""
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def chat_prompts(tokenizer, path: Path, purpose: str) -> list[tuple[str, str, list[int]]]:
    """Return (row id, user prompt, chat-templated prompt ids) for every row of a chat JSONL, in file order.

    Raises InputError naming the file and `purpose` when it has no rows.
    """
    from potstill.errors import InputError
    from potstill.io import read_jsonl

    prompts = [(row["id"], row["messages"][-2]["content"], prompt_ids(tokenizer, row["messages"][:-1]))
               for _, row in read_jsonl(path)]
    if not prompts:
        raise InputError(f"{path}: no rows {purpose}")
    return prompts


def tokenize_chat(tokenizer, messages: list[dict], max_seq_len: int) -> dict:
    """Return input_ids, labels (assistant tokens only) and where the response starts.

    The prompt is rendered with the tokenizer's chat template; the assistant reply is tokenised
    on its own and closed with the end-of-turn token, so its token boundaries are exactly the
    ones a teacher sharing this tokenizer produced (needed to line up API logprobs).
    """
    prompt = prompt_ids(tokenizer, messages[:-1])
    response_ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
    ids = (prompt + response_ids + [tokenizer.eos_token_id])[:max_seq_len]
    labels = ([-100] * len(prompt) + response_ids + [tokenizer.eos_token_id])[:max_seq_len]
    return {"input_ids": ids, "labels": labels, "response_start": len(prompt)}


SAMPLE_CHAT = [{"role": "user", "content": "What is the capital of France?"},
               {"role": "assistant", "content": "Paris is the capital of France. 2 + 2 = 4."}]


def chat_template_problem(tokenizer) -> str | None:
    """Return why a tokenizer's chat template cannot mark assistant tokens for the loss, or None."""
    if not getattr(tokenizer, "chat_template", None):
        return "has no chat template"
    try:
        prompt = tokenizer.apply_chat_template(SAMPLE_CHAT[:1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(SAMPLE_CHAT, tokenize=False)
    except Exception as exc:  # a template is user code: any failure is bad input
        return f"chat template fails on a plain user/assistant exchange ({exc})"
    if not full.startswith(prompt) or SAMPLE_CHAT[1]["content"] not in full[len(prompt):]:
        return ("chat template does not render the assistant reply right after the generation prompt, so the "
                "assistant tokens cannot be found for the loss")
    return None


def tokenizer_differences(teacher, student) -> list[str]:
    """Return what differs between two tokenizers for logit KD (same token ids needed), [] if nothing.

    Compared: the token-to-id map over the union of both vocabularies, the special-token ids, and
    the ids of a reply under each side's own chat template (templates may differ, the reply's
    tokens may not). Padded embedding rows beyond the tokenizer are not compared: the KD loss uses
    the shared id range.
    """
    problems = []
    t_vocab, s_vocab = teacher.get_vocab(), student.get_vocab()
    moved = sorted(token for token in set(t_vocab) & set(s_vocab) if t_vocab[token] != s_vocab[token])
    if moved:
        problems.append(f"{len(moved)} tokens have other ids (e.g. {moved[0]!r}: teacher {t_vocab[moved[0]]}, "
                        f"student {s_vocab[moved[0]]})")
    only_teacher, only_student = len(set(t_vocab) - set(s_vocab)), len(set(s_vocab) - set(t_vocab))
    if only_teacher or only_student:
        problems.append(f"vocabularies differ: {only_teacher} tokens only in the teacher's, {only_student} only in "
                        f"the student's ({len(t_vocab)} vs {len(s_vocab)})")
    for name in ("eos_token_id", "pad_token_id", "bos_token_id", "unk_token_id"):
        if getattr(teacher, name, None) != getattr(student, name, None):
            problems.append(f"{name}: teacher {getattr(teacher, name, None)}, student {getattr(student, name, None)}")
    if not problems and not chat_template_problem(teacher) and not chat_template_problem(student):
        reply = [tokenize_chat(tok, SAMPLE_CHAT, 512) for tok in (teacher, student)]
        ids = [[i for i, label in zip(r["input_ids"], r["labels"], strict=True) if label != -100] for r in reply]
        if ids[0] != ids[1]:
            problems.append(f"the same reply tokenises differently under the two chat templates "
                            f"({ids[0][:8]}... vs {ids[1][:8]}...)")
    return problems
