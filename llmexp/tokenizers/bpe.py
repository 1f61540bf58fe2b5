"""Byte-level BPE training, stored as tiktoken mergeable ranks.

Hugging Face `tokenizers` does the training (fast, in Rust) with the same pre-tokenization
regex tiktoken will use; the learned merges become tiktoken ranks: the 256 bytes first, then
every merged token in the order it was learned, which is the priority tiktoken merges by.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable

# GPT-4's cl100k_base pre-tokenization pattern (tiktoken's openai_public): splits words,
# numbers of up to 3 digits, punctuation runs and whitespace before merges are learned.
PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table, which byte-level BPE uses for its strings."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


def train_bpe(texts: Iterable[str], n_ranks: int, pattern: str = PATTERN) -> dict[bytes, int]:
    """Learn `n_ranks - 256` merges over `texts`; returns tiktoken's mergeable ranks."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=n_ranks,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    decode = _unicode_to_byte()
    ranks = {bytes([b]): b for b in range(256)}
    for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        raw = bytes(decode[ch] for ch in token)
        if raw not in ranks:
            ranks[raw] = len(ranks)
    return ranks
