"""The tokenizer that comes with trained weights: an llmexp run's (saved in <run>/tokenizer/) or a
transformers folder's. Every run that starts from weights reads its token ids this way, so the
ids the embeddings were trained on are the ids the new run feeds them."""
from __future__ import annotations

from pathlib import Path

from llmexp.config.errors import ConfigError
from llmexp.hf_config import is_hf_folder
from llmexp.tokenizers.tokenizer import Tokenizer


def run_dir_of(path: str | Path) -> Path:
    """A run folder, or a checkpoint file's run folder (<run>/checkpoints/x.ckpt)."""
    path = Path(path).expanduser().resolve()
    return path if path.is_dir() else path.parent.parent


def init_tokenizer(path: str | Path, key: str = "init_from") -> Tokenizer:
    """The tokenizer saved with an llmexp run, or a transformers folder's (converted by
    llmexp/tokenizers/hf.py): it comes with the weights."""
    if is_hf_folder(path):
        from llmexp.tokenizers.hf import tokenizer_from_hf

        return tokenizer_from_hf(path)
    folder = run_dir_of(path) / "tokenizer"
    if not (folder / "tokenizer.json").is_file():
        raise ConfigError(key, str(path), f"no tokenizer saved at {folder}: needs an llmexp run folder")
    return Tokenizer.load(folder)
