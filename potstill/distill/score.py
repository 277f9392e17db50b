"""Local soft targets: run the teacher checkpoint once over the curated responses, keep top-k.

Like offline logit caching in DistillKit/axolotl: for every labelled token the teacher's top-k
token ids and log-probs (T=1) are stored, a few hundred bytes a token instead of the whole
vocabulary. The mass outside the top-k is 1 - sum(exp(top-k)), recovered at training time.
"""

from __future__ import annotations

import torch

from potstill.chat import tokenize_chat


@torch.no_grad()
def score_rows(model, tokenizer, rows: list[dict], k: int, max_seq_len: int, batch_size: int,
               progress: bool = True, temperature: float = 1.0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Return {row id: (top-k ids [n, k] int32, log-probs [n, k] float32)} over labelled tokens.

    The log-probs are of the teacher's distribution at `temperature` (softmax of logits / T over
    the tokenizer's tokens), so the mass outside the top-k is exact at that temperature too.
    Embedding rows beyond the tokenizer (a padded vocabulary) are no tokens and are left out, as
    the KD loss leaves them out of the student (`vocab_limit`).
    """
    from tqdm.auto import tqdm

    model.eval()
    encoded = [(row["id"], tokenize_chat(tokenizer, row["messages"], max_seq_len)) for row in rows]
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for first in tqdm(range(0, len(encoded), batch_size), desc="teacher scoring", unit="batch",
                      disable=not progress):
        chunk = encoded[first:first + batch_size]
        length = max(len(e["input_ids"]) for _, e in chunk)
        ids = torch.full((len(chunk), length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, (_, e) in enumerate(chunk):
            ids[b, :len(e["input_ids"])] = torch.tensor(e["input_ids"])
            mask[b, :len(e["input_ids"])] = 1
        # On the model's device (stages/score.py puts it on the accelerator when there is one).
        device = next(model.parameters()).device
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for b, (row_id, e) in enumerate(chunk):
            start, end = e["response_start"], len(e["input_ids"])
            if end <= start:
                continue
            # Logits at t-1 predict token t: the targets of tokens start..end-1.
            logprobs = torch.log_softmax(logits[b, start - 1:end - 1, :len(tokenizer)].float() / temperature, dim=-1)
            top_lps, top_ids = logprobs.topk(k, dim=-1)
            out[row_id] = (top_ids.to(torch.int32).cpu(), top_lps.cpu())
    return out
