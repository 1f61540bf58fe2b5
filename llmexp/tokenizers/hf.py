"""Tokenizer kind `hf`: a transformers folder's byte-level BPE tokenizer.json as llmexp's
(tiktoken) Tokenizer, ids kept identical and checked on sample text before it is trusted.

tiktoken merges the adjacent pair whose concatenation has the lowest rank; a `tokenizers` BPE
merges the pair that comes first in its merge list, so a tokenizer.json converts when its merge
order follows its token ids. Export (the other direction) is llmexp/interop/tokenizer.py.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Optional

from llmexp.config.errors import ConfigError
from llmexp.config.schema import TokenizerConfig
from llmexp.hf_config import hf_tokenizer_problem
from llmexp.io import atomic_write_bytes, atomic_write_text, cache_root
from llmexp.tokenizers.bpe import _unicode_to_byte
from llmexp.tokenizers.kinds import register
from llmexp.tokenizers.tokenizer import EOT, Tokenizer, tiktoken_bpe_bytes

# Files of a transformers folder kept with the converted tokenizer (in its `hf/` subfolder).
ORIGINALS_DIR = "hf"
ORIGINAL_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                  "chat_template.json", "generation_config.json")
TOKEN_IDS = "token_ids.json"  # bos/eos/pad ids of the folder's config.json
# GPT-2's pattern: what a ByteLevel pre-tokenizer with use_regex=true applies.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SAMPLE = (
    "Hello, world! It's 2024: naïve café — 12345 tokens, \t tabs\n\nnew lines   and spaces. "
    "def f(x):\n    return x**2  # 🙂 Ünïcödé, 中文, русский"
)


@register("hf")
def load_hf_kind(cfg: TokenizerConfig, data_fingerprint: str, training_texts: Callable[[], Iterable[str]]) -> Tokenizer:
    """tokenizer.kind=hf: tokenizer.name is the transformers folder."""
    try:
        return tokenizer_from_hf(cfg.name, cfg.cache_dir)
    except ValueError as err:  # a tokenizer tiktoken cannot reproduce: the user's choice, one line
        raise ConfigError("tokenizer.name", cfg.name, str(err)) from None


def tokenizer_from_hf(folder: str | os.PathLike, cache_dir: Optional[str] = None) -> Tokenizer:
    """llmexp's (tiktoken) Tokenizer for a transformers folder's byte-level BPE tokenizer.json,
    or ValueError when tiktoken cannot reproduce it (the ids would not match)."""
    problem = hf_tokenizer_problem(folder)
    if problem:
        raise ValueError(problem)
    path = Path(folder).expanduser() / "tokenizer.json"
    raw = path.read_bytes()
    data = json.loads(raw)
    model = data["model"]
    pattern = _pattern(data.get("pre_tokenizer"), path)
    to_byte = _unicode_to_byte()
    specials = {t["content"]: t["id"] for t in data.get("added_tokens", []) if t.get("special")}
    try:
        ranks = {bytes(to_byte[c] for c in s): i for s, i in model["vocab"].items() if s not in specials}
    except KeyError:
        raise ValueError(f"{path}: vocabulary is not byte-level (GPT-2 byte-to-unicode) text") from None
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(f"{path}: {len(missing)} single bytes have no token; tiktoken needs all 256")
    previous = -1
    for merge in model.get("merges", []):
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank = ranks.get(bytes(to_byte[c] for c in a + b))
        if rank is None or rank < previous:
            raise ValueError(f"{path}: merge order disagrees with token ids at {a!r}+{b!r}; "
                             "tiktoken merges by id, so the ids would differ")
        previous = rank
    if EOT not in specials:  # llmexp's documents end with <|endoftext|>: alias the model's eos
        eos = _eos_token(Path(folder).expanduser(), specials)
        if eos is None:
            raise ValueError(f"{folder}: no <|endoftext|> and no eos_token to stand for it")
        specials[EOT] = specials[eos]
    originals = _original_files(Path(folder).expanduser())
    key = hashlib.sha256(b"".join(name.encode() + data for name, data in sorted(originals.items()))).hexdigest()[:16]
    out = cache_root(cache_dir) / "tokenizers" / f"hf-{key}"
    if not (out / "tokenizer.json").is_file():
        for name, data in originals.items():  # kept byte for byte: export writes them back
            atomic_write_bytes(out / ORIGINALS_DIR / name, data)
        atomic_write_bytes(out / "tokenizer.tiktoken", tiktoken_bpe_bytes(ranks))
        meta = {"name": f"hf-{key}", "pat_str": pattern, "special_tokens": specials, "ranks_file": "tokenizer.tiktoken"}
        atomic_write_text(out / "tokenizer.json", json.dumps(meta, indent=2))
    tok = Tokenizer.load(out)
    from tokenizers import Tokenizer as HFTokenizer

    check_same_ids(tok, HFTokenizer.from_str(raw.decode()).encode(SAMPLE, add_special_tokens=False).ids)
    return tok


def _original_files(folder: Path) -> dict[str, bytes]:
    """The folder's tokenizer files, generation config and the special-token ids of its
    config.json: what an export needs to give the model back its tokens as they were."""
    files = {name: (folder / name).read_bytes() for name in ORIGINAL_FILES if (folder / name).is_file()}
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    ids = {k: config.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    files[TOKEN_IDS] = json.dumps(ids).encode()
    return files


def _pattern(pre: Optional[dict], path: Path) -> str:
    """The pre-tokenization regex of a byte-level tokenizer.json."""
    steps = (pre.get("pretokenizers") or []) if pre and pre.get("type") == "Sequence" else [pre] if pre else []
    split = [s for s in steps if s.get("type") == "Split"]
    byte_level = [s for s in steps if s.get("type") == "ByteLevel"]
    if not byte_level or any(s.get("add_prefix_space") for s in byte_level):
        raise ValueError(f"{path}: not a byte-level pre-tokenizer without prefix space")
    if len(split) == 1 and not byte_level[0].get("use_regex", True) and split[0].get("behavior") == "Isolated":
        return split[0]["pattern"].get("Regex") or split[0]["pattern"]["String"]
    if not split and byte_level[0].get("use_regex", True):
        return GPT2_PATTERN
    raise ValueError(f"{path}: pre-tokenizer {[s.get('type') for s in steps]} has no tiktoken equivalent")


def _eos_token(folder: Path, specials: dict[str, int]) -> Optional[str]:
    config = folder / "tokenizer_config.json"
    if config.is_file():
        eos = json.loads(config.read_text()).get("eos_token")
        eos = eos.get("content") if isinstance(eos, dict) else eos
        if eos in specials:
            return eos
    return None


def check_same_ids(tok: Tokenizer, hf_ids: list[int]) -> None:
    ours = tok.encode(SAMPLE)
    if ours != hf_ids:
        first = next((i for i, (a, b) in enumerate(zip(ours, hf_ids)) if a != b), min(len(ours), len(hf_ids)))
        raise ValueError(f"tokenizer conversion changes token ids (first difference at position {first}); refusing it")
