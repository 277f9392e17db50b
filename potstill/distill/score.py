"""Local soft targets: run the teacher checkpoint once over the curated responses, keep top-k.

Like offline logit caching in DistillKit/axolotl: for every labelled token the teacher's top-k
token ids and log-probs (T=1) are stored, a few hundred bytes a token instead of the whole
vocabulary. The mass outside the top-k is 1 - sum(exp(top-k)), recovered at training time.
`score_sequences` is the same forward pass over token ids, used for on-policy rollouts too.
"""

from __future__ import annotations

import torch

from potstill.chat import tokenize_chat


@torch.no_grad()
def score_sequences(model, sequences: list[tuple[list[int], int]], k: int, vocab_limit: int, pad_token_id: int,
                    temperature: float = 1.0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Return, per (token ids, response start), the teacher's view of the response tokens.

    Each entry: (top-k ids [n, k] int32, their log-probs [n, k], log-prob of the token actually
    there [n]), for the n tokens from the response start on. Log-probs are of the distribution at
    `temperature` over the first `vocab_limit` ids (a padded vocabulary's extra rows are no tokens),
    so the mass outside the top-k is exact at that temperature. One forward pass for all sequences.
    """
    length = max(len(ids) for ids, _ in sequences)
    batch = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(batch)
    for b, (ids, _) in enumerate(sequences):
        batch[b, :len(ids)] = torch.tensor(ids)
        mask[b, :len(ids)] = 1
    # On the model's device (stages/score.py puts it on the accelerator when there is one).
    device = next(model.parameters()).device
    logits = model(input_ids=batch.to(device), attention_mask=mask.to(device)).logits
    out = []
    for b, (ids, start) in enumerate(sequences):
        end = len(ids)
        # Logits at t-1 predict token t: the targets of tokens start..end-1.
        logprobs = torch.log_softmax(logits[b, start - 1:end - 1, :vocab_limit].float() / temperature, dim=-1)
        top_lps, top_ids = logprobs.topk(k, dim=-1)
        actual = logprobs.gather(-1, batch[b, start:end, None].to(logits.device))[:, 0]  # last GPU under device_map
        out.append((top_ids.to(torch.int32).cpu(), top_lps.cpu(), actual.cpu()))
    return out


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
    encoded = [(row_id, e) for row_id, e in encoded if len(e["input_ids"]) > e["response_start"]]
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for first in tqdm(range(0, len(encoded), batch_size), desc="teacher scoring", unit="batch",
                      disable=not progress):
        chunk = encoded[first:first + batch_size]
        scored = score_sequences(model, [(e["input_ids"], e["response_start"]) for _, e in chunk], k,
                                 len(tokenizer), tokenizer.pad_token_id, temperature)
        for (row_id, _), (top_ids, top_lps, _) in zip(chunk, scored, strict=True):
            out[row_id] = (top_ids, top_lps)
    return out
