"""The tokenizer kinds llmexp can load, by `tokenizer.kind`: a registry each kind's module adds
itself to (bpe and tiktoken in tokenizer.py, hf in hf.py), so loading never reaches up into
the modules that use tokenizers."""
from __future__ import annotations

from typing import Any, Callable

# (tokenizer config, data fingerprint, () -> training texts) -> llmexp.tokenizers.Tokenizer
Loader = Callable[..., Any]
KINDS: dict[str, Loader] = {}


def register(kind: str) -> Callable[[Loader], Loader]:
    def add(loader: Loader) -> Loader:
        KINDS[kind] = loader
        return loader
    return add
