"""Preference pairs (prompt, chosen, rejected) -> token ids with response masks.

A record is `{"prompt": str | messages, "chosen": str | messages, "rejected": str | messages}`
(field names configurable), or `{"messages": [...], "chosen": ..., "rejected": ...}`. A
chosen/rejected given as messages is the assistant turn(s) that follow the prompt. Optional
precomputed reference log-probs (DPO's reference=precomputed) ride along.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from llmexp.data.chat import IGNORE, ChatTemplate, Example, Skipped, messages_of, render, truncate
from llmexp.data.sources import DataError


@dataclass
class Pair:
    chosen: Example
    rejected: Example
    ref_logps: Optional[tuple[float, float]] = None  # (chosen, rejected) under the reference
    # the prompt as generation starts from it: {"ids", "prompt" (last user message), "messages"}
    prompt: Optional[dict] = None


def _reply(value: Any, where: str, key: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and m.get("role") == "assistant"
                                                  and isinstance(m.get("content"), str) for m in value):
        return [{"role": "assistant", "content": m["content"]} for m in value]
    raise DataError(f"{where}: {key!r} must be a string or a list of assistant messages, got {value!r:.80}")


def _prompt(record: dict, where: str, messages_field: str, prompt_field: str) -> list[dict[str, str]]:
    if messages_field not in record and isinstance(record.get(prompt_field), list):
        record = {**record, messages_field: record[prompt_field]}
    messages = messages_of(record, where, messages_field, prompt_field, None)
    if messages[-1]["role"] == "assistant":
        raise DataError(f"{where}: the prompt must end with a user (or system) message, not the assistant's")
    return messages


def preference_pairs(records: list[tuple[str, dict]], tokenizer, template: ChatTemplate, seq_len: int, *,
                     messages_field: str, prompt_field: str, chosen_field: str, rejected_field: str,
                     truncation: str, skipped: Skipped, ref_fields: Optional[tuple[str, str]] = None) -> list[Pair]:
    """Malformed records and missing fields raise; pairs with an empty or identical reply are
    skipped and counted. Truncation applies to the prompt+reply of each side; a pair is kept
    only when both sides fit (or are cut by the policy)."""
    pairs = []
    for where, record in records:
        for key in (chosen_field, rejected_field) + (ref_fields or ()):
            if key not in record:
                raise DataError(f"{where}: no field {key!r} (fields: {', '.join(sorted(record))})")
        prompt = _prompt(record, where, messages_field, prompt_field)
        chosen = _reply(record[chosen_field], where, chosen_field)
        rejected = _reply(record[rejected_field], where, rejected_field)
        if any(not m["content"].strip() for m in chosen + rejected):
            skipped.add("pairs with an empty response")
            continue
        if chosen == rejected:
            skipped.add("pairs whose chosen and rejected are identical")
            continue
        sides = []
        prompt_ids = render(tokenizer, template, prompt, "assistant", generation_prompt=True).ids
        n_prompt = len(prompt_ids)
        for reply in (chosen, rejected):
            ex = render(tokenizer, template, prompt + reply, "assistant", where=where)
            # Only the reply is scored: the prompt's tokens are context.
            ex.target = [False] * n_prompt + ex.target[n_prompt:]
            sides.append(truncate(ex, seq_len, truncation, skipped))
        if None in sides:
            continue
        ref = None
        if ref_fields:
            try:
                ref = (float(record[ref_fields[0]]), float(record[ref_fields[1]]))
            except (TypeError, ValueError):
                raise DataError(f"{where}: {ref_fields[0]!r} and {ref_fields[1]!r} must be numbers") from None
        user = [m["content"] for m in prompt if m["role"] == "user"]
        pairs.append(Pair(sides[0], sides[1], ref, {"ids": prompt_ids, "prompt": user[-1] if user else "",
                                                    "messages": prompt}))
    return pairs


def _labels(ids: list[int], target: list[bool], width: int) -> torch.Tensor:
    """Next-token labels of one row: position j predicts token j+1 when it is a target."""
    labels = torch.full((width,), IGNORE, dtype=torch.long)
    labels[: len(ids) - 1] = torch.tensor([ids[j + 1] if target[j + 1] else IGNORE for j in range(len(ids) - 1)])
    return labels


def _rows(rows: list[tuple[list[int], list[bool]]], pad_id: int, multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    width = -(-max(len(ids) for ids, _ in rows) // multiple) * multiple
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, (ids, _) in enumerate(rows):
        tokens[i, : len(ids)] = torch.tensor(ids)
    return tokens, torch.stack([_labels(ids, target, width) for ids, target in rows])


def mismatched_rows(examples: list[Example]) -> list[tuple[list[int], list[bool]]]:
    """KTO's KL rows: row j's prompt with row j+1's reply (cycled), as TRL's KTO collator
    builds them; never a matched prompt/reply when rows have different prompts."""
    split = [ex.target.index(True) for ex in examples]
    out = []
    for j, ex in enumerate(examples):
        k = (j + 1) % len(examples)
        reply = examples[k].ids[split[k]:]
        out.append((ex.ids[: split[j]] + reply, [False] * split[j] + [True] * len(reply)))
    return out


def collate_pairs(pairs: list[Pair], pad_id: int, kl_rows: bool = False, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Chosen rows first, then rejected, right-padded to the longest (rounded up to `multiple`:
    the TP degree, which sequence parallelism splits the width by): `tokens`, next-token
    `labels` (IGNORE outside the replies), `full_labels` (every real next token: ORPO's NLL
    is over prompt and reply), `last` (index of each row's final real token); `kl_rows`: KTO's
    mismatched `kl_tokens`/`kl_labels`."""
    examples = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    tokens, labels = _rows([(r.ids, r.target) for r in examples], pad_id, multiple)
    _, full_labels = _rows([(r.ids, [True] * len(r.ids)) for r in examples], pad_id, multiple)
    batch = {"tokens": tokens, "labels": labels, "full_labels": full_labels,
             "last": torch.tensor([len(r.ids) - 1 for r in examples])}
    if kl_rows:
        batch["kl_tokens"], batch["kl_labels"] = _rows(mismatched_rows(examples), pad_id, multiple)
    if pairs[0].prompt is not None:  # held-out generation (stage.eval_fn) starts from these
        batch["prompts"] = [p.prompt for p in pairs]
    if pairs[0].ref_logps is not None:
        batch["ref_logps"] = torch.tensor([p.ref_logps[0] for p in pairs] + [p.ref_logps[1] for p in pairs])
    return batch
