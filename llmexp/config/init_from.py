"""The init_from pass: a run that starts from trained weights takes the model's shape (and its
tokenizer) from them, so a user never repeats model=... for them.

- init_from=hf:<org>/<name>[@revision]: the hub snapshot's folder (llmexp/hub.py: downloaded into
  the hub cache when online, read from it offline), then as a transformers folder.
- init_from=<transformers folder>: `model.*` from its config.json, tokenizer kind=hf (the folder's).
- post-training and eval stages from an llmexp run: model and tokenizer from the run's saved
  config.yaml, or from `planned` (run folders a pipeline will create; llmexp/pipeline.py).

Pure apart from the files it names: it returns a new Config and reads only init_from's config
files (after fetching a hub reference into the hub cache) and the shipped default model preset.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from llmexp.artifacts import PlannedRuns, is_checkpoint, is_model_source, saved_config
from llmexp.config.checks import require
from llmexp.config.compose import conf_dir
from llmexp.config.errors import ConfigError
from llmexp.config.schema import POST_TRAINING, Config, ModelConfig, TokenizerConfig
from llmexp.hf_config import hf_model_fields, is_hf_folder, read_hf_config
from llmexp.hub import HUB_PREFIX, HubError, resolve_hub

# The model keys that make two models the same network.
SHAPE_KEYS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len", "tie_embeddings", "vocab_size",
              "head_dim", "attention_bias", "qk_norm", "sliding_window", "rope_scaling", "rope_factor")


def resolve_init_from(cfg: Config, planned: PlannedRuns = {}) -> Config:
    """`cfg` with model and tokenizer taken from init_from where the stage starts from it."""
    if cfg.init_from is not None and cfg.init_from.startswith(HUB_PREFIX):
        try:  # the snapshot folder (its path names the commit) stands for the hub reference from here on
            cfg = dataclasses.replace(cfg, init_from=str(resolve_hub(cfg.init_from)))
        except HubError as err:
            raise ConfigError("init_from", cfg.init_from, str(err)) from None
    if cfg.init_from is not None and is_hf_folder(cfg.init_from):
        return _from_hf_folder(cfg)
    if cfg.stage.name in POST_TRAINING or cfg.stage.name == "eval":
        return _from_llmexp_run(cfg, planned)
    if cfg.init_from is not None and saved_config(cfg.init_from, planned) is not None:  # continued pretraining
        return _from_llmexp_run(cfg, planned)  # (a bare .ckpt keeps the model as given: nothing says its shape)
    return cfg


def _from_llmexp_run(cfg: Config, planned: PlannedRuns) -> Config:
    stage = cfg.stage.name
    require(cfg.init_from is not None, "init_from", None,
            f"stage={stage} starts from a trained model: give an llmexp run folder or checkpoint"
            + (", or a transformers folder" if stage == "eval" else ""))
    saved = saved_config(cfg.init_from, planned)
    require(saved is not None, "init_from", cfg.init_from,
            "needs an llmexp run folder (with config.yaml and checkpoints/last.ckpt) or a checkpoint inside one")
    require(is_checkpoint(cfg.init_from) or is_model_source(cfg.init_from, planned), "init_from", cfg.init_from,
            "needs a .ckpt file or an llmexp run folder with checkpoints/last.ckpt")
    require(isinstance(saved.get("model"), dict) and isinstance(saved.get("tokenizer"), dict), "init_from",
            cfg.init_from, "its config.yaml is not an llmexp run's (no model/tokenizer sections)")
    old, names = saved["model"], {f.name for f in dataclasses.fields(ModelConfig)}
    given = dataclasses.asdict(cfg.model)
    untouched = all(given[k] == v for k, v in _default_model().items() if k in given)
    if not untouched:  # the user chose a model: it must be the one in the checkpoint
        for key in SHAPE_KEYS:
            if key in old and given[key] != old[key]:
                raise ConfigError(f"model.{key}", given[key],
                                  f"init_from's model has {key}={old[key]!r}: stage={stage} takes the model from "
                                  "init_from, drop the model override")
    tok, tok_names = saved["tokenizer"], {f.name for f in dataclasses.fields(TokenizerConfig)}
    return dataclasses.replace(
        cfg, model=ModelConfig(**{k: v for k, v in old.items() if k in names}),
        tokenizer=TokenizerConfig(**{k: v for k, v in tok.items() if k in tok_names}))


def _default_model() -> dict:
    """The model preset config.yaml selects when no model= is given, as its YAML says."""
    defaults = yaml.safe_load((conf_dir() / "config.yaml").read_text())["defaults"]
    name = next(d["model"] for d in defaults if isinstance(d, dict) and "model" in d)
    return yaml.safe_load((conf_dir() / "model" / f"{name}.yaml").read_text())


def _from_hf_folder(cfg: Config) -> Config:
    try:
        adopted = hf_model_fields(read_hf_config(cfg.init_from))
    except (ValueError, KeyError) as err:
        raise ConfigError("init_from", cfg.init_from, f"transformers folder: {err}") from None
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    model = ModelConfig(**{k: v for k, v in adopted.items() if k in names}, init_std=cfg.model.init_std)
    # The folder's tokenizer is the one used (its vocabulary may be smaller than the model's,
    # padded one); the data pipeline loads it as tokenizer.kind=hf.
    folder = Path(cfg.init_from).expanduser().resolve()
    tokenizer = TokenizerConfig(kind="hf", name=str(folder), vocab_size=adopted["vocab_size"],
                                special_tokens=_hf_special_tokens(folder), cache_dir=cfg.tokenizer.cache_dir)
    return dataclasses.replace(cfg, model=model, tokenizer=tokenizer)


def _hf_special_tokens(folder: Path) -> list[str]:
    """The special tokens a transformers folder's tokenizer.json declares (what chat templates
    can use); empty when it has none or no tokenizer.json (kind=hf then refuses it)."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return []
    added = json.loads(path.read_text(encoding="utf-8")).get("added_tokens", [])
    return [t["content"] for t in added if t.get("special")]


__all__ = ["resolve_init_from", "SHAPE_KEYS"]
