"""Export: llmexp's tiktoken ranks as a Hugging Face `tokenizers` byte-level BPE, ids kept identical.

Listing, for every token, each split of it into two tokens, ordered by the token's rank, makes a
`tokenizers` BPE merge as tiktoken does (transformers' TikTokenConverter builds exactly that
list). `ignore_merges` matches tiktoken's shortcut of taking a whole pre-token that is itself in
the vocabulary. The result is checked on sample text before it is written. Import (the other
direction) is the `hf` tokenizer kind, llmexp/tokenizers/hf.py.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from llmexp.tokenizers import Tokenizer
from llmexp.tokenizers.hf import SAMPLE, TOKEN_IDS, check_same_ids
from llmexp.tokenizers.tokenizer import EOT, tiktoken_bpe_bytes


def hf_tokenizer(tok: Tokenizer):
    """`tok` as a `tokenizers.Tokenizer` (byte-level BPE, same regex, same ids, specials kept)."""
    from tokenizers import AddedToken, Regex, decoders, pre_tokenizers, processors
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import TikTokenConverter

    enc = tok.encoding
    with tempfile.TemporaryDirectory() as tmp:
        ranks_file = tok.ranks_path
        if ranks_file is None:  # a named tiktoken encoding: write its ranks for the converter
            ranks_file = Path(tmp) / "ranks.tiktoken"
            ranks_file.write_bytes(tiktoken_bpe_bytes(enc._mergeable_ranks))
        vocab, merges = TikTokenConverter(vocab_file=str(ranks_file), pattern=enc._pat_str) \
            .extract_vocab_merges_from_model(str(ranks_file))
    specials = dict(enc._special_tokens)
    vocab.update(specials)  # at their tiktoken ids, gaps included (cl100k_base has some)
    hf = HFTokenizer(BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(onig_pattern(enc._pat_str)), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    hf.decoder = decoders.ByteLevel()
    hf.post_processor = processors.ByteLevel(trim_offsets=False)
    hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in sorted(specials, key=specials.get)])
    check_same_ids(tok, hf.encode(SAMPLE, add_special_tokens=False).ids)
    return hf


def onig_pattern(pattern: str) -> str:
    """tiktoken's regex for `tokenizers` (Oniguruma). Oniguruma reads `{1,3}+` not as a
    possessive {1,3} but as `({1,3})+` (so "2024" would be one piece instead of "202", "4");
    on a bounded repeat that ends its alternative, possessive and greedy match alike."""
    return re.sub(r"(\{\d+(?:,\d*)?\})\+", r"\1", pattern)


def save_hf_tokenizer(tok: Tokenizer, folder: str | os.PathLike, model_max_length: Optional[int] = None,
                      chat_template: Optional[str] = None) -> None:
    """tokenizer.json + tokenizer_config.json that `AutoTokenizer.from_pretrained` loads offline.
    A tokenizer that came from a transformers folder is written back as it was, byte for byte
    (special tokens, bos/eos, padding side, its own chat template); llmexp's own get
    `chat_template` (Jinja), so `apply_chat_template` works on every export."""
    from transformers import PreTrainedTokenizerFast

    if tok.hf_files is not None:
        for f in tok.hf_files.iterdir():
            if f.name not in (TOKEN_IDS, "generation_config.json"):  # those two belong to the model's config
                shutil.copyfile(f, Path(folder) / f.name)
        return
    specials = tok.encoding._special_tokens
    fast = PreTrainedTokenizerFast(
        tokenizer_object=hf_tokenizer(tok),
        bos_token=EOT, eos_token=EOT,  # GPT-2's convention: <|endoftext|> separates documents
        pad_token="<|pad|>" if "<|pad|>" in specials else None,
        model_max_length=model_max_length or int(1e30),
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = chat_template
    fast.save_pretrained(str(folder))
