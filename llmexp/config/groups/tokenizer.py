"""tokenizer group: `kind=bpe` trains a byte-level BPE on the data (cached by content hash);
`kind=tiktoken` loads one of tiktoken's named encodings; `kind=hf` converts a transformers
folder's tokenizer (set by init_from=<transformers folder>)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional

from llmexp.config.checks import choice, one_of, positive, require
from llmexp.hf_config import hf_tokenizer_problem

TIKTOKEN_VOCAB = {"gpt2": 50257, "cl100k_base": 100277, "o200k_base": 200019}
BYTE_TOKENS = 256


@dataclass
class TokenizerConfig:
    kind: str = choice(Literal["bpe", "tiktoken", "hf"], "bpe")
    name: str = "bpe"  # kind=tiktoken: gpt2, cl100k_base, o200k_base; kind=hf: the folder
    vocab_size: int = 4096  # total, special tokens included
    special_tokens: List[str] = field(
        default_factory=lambda: ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
    )
    train_max_bytes: int = 50_000_000  # BPE training reads at most this much of the data
    cache_dir: Optional[str] = None  # None: $LLMEXP_CACHE or ~/.cache/llmexp


def check_tokenizer(t: TokenizerConfig) -> None:
    if t.kind == "hf":  # a transformers folder's tokenizer: its special tokens are its own
        problem = hf_tokenizer_problem(t.name)
        require(problem is None, "tokenizer.name", t.name, f"kind=hf needs a transformers folder with a supported tokenizer: {problem}")
        return
    require(len(set(t.special_tokens)) == len(t.special_tokens), "tokenizer.special_tokens", t.special_tokens, "must be unique")
    require("<|endoftext|>" in t.special_tokens, "tokenizer.special_tokens", t.special_tokens, "must include <|endoftext|>")
    if t.kind == "tiktoken":
        one_of("tokenizer.name", t.name, TIKTOKEN_VOCAB)
        expected = TIKTOKEN_VOCAB[t.name]
        require(t.vocab_size == expected, "tokenizer.vocab_size", t.vocab_size, f"{t.name} has {expected} tokens")
    else:
        smallest = BYTE_TOKENS + len(t.special_tokens) + 1
        require(
            smallest <= t.vocab_size <= 2**20, "tokenizer.vocab_size", t.vocab_size,
            f"a byte-level BPE needs {smallest} to {2**20} tokens (256 bytes + specials + merges)",
        )
        positive("tokenizer.train_max_bytes", t.train_max_bytes)
