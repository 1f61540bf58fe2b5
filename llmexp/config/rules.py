"""Cross-field rules of the validate pass. Each failure is one ConfigError naming key, value, allowed."""
from __future__ import annotations

import glob
import os
from typing import Iterable

from llmexp.accelerators import ACCELERATORS
from llmexp.config.errors import ConfigError
from llmexp.config.schema import STAGE_SCHEMAS, Config

TIKTOKEN_VOCAB = {"gpt2": 50257, "cl100k_base": 100277, "o200k_base": 200019}
STRATEGIES = ("auto", "single", "ddp")
PRECISIONS = ("32", "bf16-mixed", "16-mixed", "bf16-true")
SCHEDULES = ("cosine", "linear", "constant", "wsd")
SOURCE_KINDS = ("embedded", "text", "jsonl")
LOGGERS = ("csv", "wandb", "tensorboard")
PLANS = ("chinchilla", "explicit")
DRY_RUN = (False, True, "json")
BYTE_TOKENS = 256


def _require(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def _one_of(key: str, value: object, choices: Iterable[object]) -> None:
    choices = tuple(choices)
    _require(value in choices, key, value, "allowed: " + ", ".join(map(str, choices)))


def _positive(key: str, value: float | int | None, optional: bool = False) -> None:
    if value is None and optional:
        return
    _require(value is not None and value > 0, key, value, "must be > 0")


def normalize_dry_run(value: object) -> object:
    """`dry_run` arrives as a bool or a string from the command line."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def check_rules(cfg: Config) -> None:
    cfg.dry_run = normalize_dry_run(cfg.dry_run)
    _require(cfg.dry_run in DRY_RUN, "dry_run", cfg.dry_run, "allowed: false, true, json")
    _check_model(cfg)
    _check_tokenizer(cfg)
    _check_data(cfg)
    _check_optimizer(cfg)
    _check_parallelism(cfg)
    _one_of("stage.name", cfg.stage.name, STAGE_SCHEMAS)
    _check_trainer(cfg)
    _one_of("logger.name", cfg.logger.name, LOGGERS)
    _check_plan(cfg)
    if cfg.init_from is not None:
        _require(_is_checkpoint(cfg.init_from), "init_from", cfg.init_from,
                 "needs a .ckpt file or an llmexp run folder with checkpoints/last.ckpt")
    if cfg.resume is not None:
        _require(os.path.exists(os.path.expanduser(cfg.resume)), "resume", cfg.resume, "no such checkpoint or run folder")


def _is_checkpoint(path: str) -> bool:
    path = os.path.expanduser(path)
    return os.path.isfile(path) or os.path.isfile(os.path.join(path, "checkpoints", "last.ckpt"))


def _check_model(cfg: Config) -> None:
    m = cfg.model
    for key in ("n_layers", "d_model", "n_heads", "ffn_dim", "max_seq_len"):
        _positive(f"model.{key}", getattr(m, key))
    _positive("model.rope_theta", m.rope_theta)
    _positive("model.norm_eps", m.norm_eps)
    _positive("model.init_std", m.init_std)
    _require(m.d_model % m.n_heads == 0, "model.n_heads", m.n_heads, f"must divide model.d_model={m.d_model}")
    head_dim = m.d_model // m.n_heads
    _require(head_dim % 2 == 0, "model.n_heads", m.n_heads, f"head dim d_model/n_heads={head_dim} must be even for RoPE")
    if m.n_kv_heads is not None:
        _positive("model.n_kv_heads", m.n_kv_heads)
        _require(m.n_heads % m.n_kv_heads == 0, "model.n_kv_heads", m.n_kv_heads, f"must divide model.n_heads={m.n_heads}")
    if m.vocab_size is not None:
        _require(
            m.vocab_size >= cfg.tokenizer.vocab_size, "model.vocab_size", m.vocab_size,
            f"must be >= tokenizer.vocab_size={cfg.tokenizer.vocab_size} (null: take the tokenizer's)",
        )


def _check_tokenizer(cfg: Config) -> None:
    t = cfg.tokenizer
    _one_of("tokenizer.kind", t.kind, ("bpe", "tiktoken"))
    _require(len(set(t.special_tokens)) == len(t.special_tokens), "tokenizer.special_tokens", t.special_tokens, "must be unique")
    _require("<|endoftext|>" in t.special_tokens, "tokenizer.special_tokens", t.special_tokens, "must include <|endoftext|>")
    if t.kind == "tiktoken":
        _one_of("tokenizer.name", t.name, TIKTOKEN_VOCAB)
        expected = TIKTOKEN_VOCAB[t.name]
        _require(t.vocab_size == expected, "tokenizer.vocab_size", t.vocab_size, f"{t.name} has {expected} tokens")
    else:
        smallest = BYTE_TOKENS + len(t.special_tokens) + 1
        _require(
            smallest <= t.vocab_size <= 2**20, "tokenizer.vocab_size", t.vocab_size,
            f"a byte-level BPE needs {smallest} to {2**20} tokens (256 bytes + specials + merges)",
        )
        _positive("tokenizer.train_max_bytes", t.train_max_bytes)


def _check_data(cfg: Config) -> None:
    d = cfg.data
    _require(len(d.sources) > 0, "data.sources", [], "needs at least one source")
    for i, src in enumerate(d.sources):
        key = f"data.sources.{i}"
        _one_of(f"{key}.kind", src.kind, SOURCE_KINDS)
        if src.kind == "embedded":
            continue
        _require(bool(src.path), f"{key}.path", src.path, f"required for kind={src.kind}")
        pattern = os.path.expanduser(src.path)
        found = os.path.exists(pattern) or bool(glob.glob(pattern, recursive=True))
        _require(found, f"{key}.path", src.path, "no such file, folder or glob match")
    _require(0.0 < d.val_fraction < 0.5, "data.val_fraction", d.val_fraction, "must be in (0, 0.5)")


def _check_optimizer(cfg: Config) -> None:
    o = cfg.optimizer
    _positive("optimizer.lr", o.lr)
    _require(
        len(o.betas) == 2 and all(0.0 <= b < 1.0 for b in o.betas), "optimizer.betas", o.betas,
        "two values in [0, 1)",
    )
    _positive("optimizer.eps", o.eps)
    _require(o.weight_decay >= 0, "optimizer.weight_decay", o.weight_decay, "must be >= 0")
    _positive("optimizer.grad_clip", o.grad_clip, optional=True)
    _one_of("optimizer.schedule", o.schedule, SCHEDULES)
    _require(o.warmup_steps >= 0, "optimizer.warmup_steps", o.warmup_steps, "must be >= 0")
    _require(0.0 <= o.min_lr_ratio <= 1.0, "optimizer.min_lr_ratio", o.min_lr_ratio, "must be in [0, 1]")
    _require(0.0 < o.decay_fraction <= 1.0, "optimizer.decay_fraction", o.decay_fraction, "must be in (0, 1]")


def _check_parallelism(cfg: Config) -> None:
    p, t = cfg.parallelism, cfg.trainer
    _one_of("parallelism.strategy", p.strategy, STRATEGIES)
    _one_of("parallelism.precision", p.precision, PRECISIONS)
    world = t.devices * t.num_nodes
    if p.strategy == "single":
        _require(world == 1, "parallelism.strategy", p.strategy, f"runs on one device, but trainer.devices x num_nodes = {world}: use ddp")
    if t.accelerator == "cpu":
        _require(p.precision != "16-mixed", "parallelism.precision", p.precision, "16-mixed needs a GPU; on CPU use 32 or bf16-mixed")


def _check_trainer(cfg: Config) -> None:
    t, m = cfg.trainer, cfg.model
    _one_of("trainer.accelerator", t.accelerator, ("auto", "cpu", "gpu"))
    _positive("trainer.devices", t.devices)
    _positive("trainer.num_nodes", t.num_nodes)
    _positive("trainer.max_steps", t.max_steps, optional=True)
    _positive("trainer.max_tokens", t.max_tokens, optional=True)
    if t.seq_len is not None:
        _positive("trainer.seq_len", t.seq_len)
        _require(t.seq_len <= m.max_seq_len, "trainer.seq_len", t.seq_len, f"must be <= model.max_seq_len={m.max_seq_len}")
    _positive("trainer.micro_batch_size", t.micro_batch_size)
    _positive("trainer.global_batch_size", t.global_batch_size)
    per_step = t.micro_batch_size * t.devices * t.num_nodes
    _require(
        t.global_batch_size % per_step == 0, "trainer.global_batch_size", t.global_batch_size,
        f"must be a multiple of micro_batch_size x devices x num_nodes = {per_step}",
    )
    for key in ("log_every", "val_every", "val_batches", "checkpoint_every"):
        _positive(f"trainer.{key}", getattr(t, key))
    _require(t.num_workers >= 0, "trainer.num_workers", t.num_workers, "must be >= 0")


def _check_plan(cfg: Config) -> None:
    p, t = cfg.plan, cfg.trainer
    _one_of("plan.name", p.name, PLANS)
    _positive("plan.tokens_per_param", p.tokens_per_param)
    _one_of("plan.accelerator", p.accelerator, ACCELERATORS)
    _require(0.0 < p.mfu <= 1.0, "plan.mfu", p.mfu, "must be in (0, 1]")
    if p.name == "explicit":
        _require(
            t.max_steps is not None or t.max_tokens is not None, "trainer.max_steps", None,
            "plan=explicit needs a budget: set trainer.max_steps or trainer.max_tokens",
        )
