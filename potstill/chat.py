"""Chat rows as token ids: the chat template renders the prompt, the loss sees only assistant tokens."""

from __future__ import annotations


def tokenize_chat(tokenizer, messages: list[dict], max_seq_len: int) -> dict:
    """Return input_ids, labels (assistant tokens only) and where the response starts.

    The prompt is rendered with the tokenizer's chat template; the assistant reply is tokenised
    on its own and closed with the end-of-turn token, so its token boundaries are exactly the
    ones a teacher sharing this tokenizer produced (needed to line up API logprobs).
    """
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + response_ids + [tokenizer.eos_token_id])[:max_seq_len]
    labels = ([-100] * len(prompt_ids) + response_ids + [tokenizer.eos_token_id])[:max_seq_len]
    return {"input_ids": ids, "labels": labels, "response_start": len(prompt_ids)}
