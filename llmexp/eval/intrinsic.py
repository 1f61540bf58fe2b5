"""Intrinsic metrics on held-out text: perplexity, bits per byte and bits per character.

Perplexity is per token, so it depends on the tokenizer; bits per byte divides the same total
negative log-likelihood by the text's UTF-8 bytes instead, which every tokenizer sees
identically, so runs with different tokenizers compare fairly:

    bits_per_byte = total nats / (ln 2 * UTF-8 bytes)        perplexity = exp(total nats / tokens)
    bits_per_character = total nats / (ln 2 * Unicode characters)   (the character-level LM literature's unit)

Documents are scored whole, in disjoint context-length windows, the first token conditioned on
<|endoftext|> (the same windows lm-eval's perplexity tasks use).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from llmexp.config.schema import Config


def text_metrics(model, tokenizer, texts: Sequence[str], batch_size: int = 8) -> dict[str, Any]:
    """Perplexity, bits per byte and bits per character of `model` on `texts` (whole documents)."""
    from llmexp.eval.lm import LlmexpLM

    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("no text to score")
    lm = model if isinstance(model, LlmexpLM) else LlmexpLM.from_model(model, tokenizer, batch_size=batch_size)
    scored = lm.rolling_loglikelihoods(list(texts))
    nats = -sum(lp for lp, _ in scored)
    tokens = sum(n for _, n in scored)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_chars = sum(len(t) for t in texts)
    return {
        "documents": len(texts), "tokens": tokens, "bytes": n_bytes, "characters": n_chars, "nats": nats,
        "bits_per_character": nats / (math.log(2) * n_chars),
        "nats_per_token": nats / tokens, "perplexity": math.exp(nats / tokens),
        "bits_per_byte": nats / (math.log(2) * n_bytes), "bytes_per_token": n_bytes / tokens,
    }


def texts_from(spec: str, cfg: Config) -> list[str]:
    """`val`: the held-out documents of the data group (the split training held out);
    otherwise a .txt file (one document) or a .jsonl file (its `text` field per line)."""
    if spec == "val":
        from llmexp.data.sources import source_documents
        from llmexp.data.split import split_documents

        docs = [doc for source in cfg.data.sources for doc in source_documents(source)]
        return split_documents(docs, cfg.data.val_fraction, cfg.data.split_seed)[1]
    path = Path(spec).expanduser()
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    return [path.read_text()]
