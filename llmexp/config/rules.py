"""Cross-field rules of the validate pass. Each failure is one ConfigError naming key, value, allowed."""
from __future__ import annotations

import glob
import os
import re
import string
from pathlib import Path
from typing import Iterable

from llmexp.accelerators import ACCELERATORS
from llmexp.config.errors import ConfigError
from llmexp.config.schema import STAGE_SCHEMAS, Config, TokenizerConfig
from llmexp.hub import HUB_PREFIX, HubError, resolve_hub

TIKTOKEN_VOCAB = {"gpt2": 50257, "cl100k_base": 100277, "o200k_base": 200019}
STRATEGIES = ("auto", "single", "ddp", "fsdp", "tp", "fsdp_tp", "deepspeed")
AC_MODES = ("full", "selective")
PRECISIONS = ("32", "bf16-mixed", "16-mixed", "bf16-true")
SCHEDULES = ("cosine", "linear", "constant", "wsd")
SOURCE_KINDS = ("embedded", "text", "jsonl", "parquet", "hf")
ON_EXHAUSTED = ("repeat", "stop")
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
    _one_of("stage.name", cfg.stage.name, STAGE_SCHEMAS)
    hf_init = _adopt_hf_folder(cfg)  # init_from=<transformers folder>: the model shape is its config.json's
    if (cfg.stage.name in POST_TRAINING or cfg.stage.name == "eval") and not hf_init:
        _adopt_init_from(cfg)  # first: the model and tokenizer the other rules check come from it
    _check_model(cfg)
    _check_tokenizer(cfg)
    _check_data(cfg)
    _check_optimizer(cfg)
    _check_parallelism(cfg)
    _check_trainer(cfg)
    _one_of("logger.name", cfg.logger.name, LOGGERS)
    _check_plan(cfg)
    _check_eval(cfg)
    if cfg.stage.name in POST_TRAINING:
        _check_post_training(cfg)
    for i, step in enumerate(cfg.pipeline):
        _require(bool(step.name) and "/" not in step.name, f"pipeline.{i}.name", step.name, "a non-empty name without '/'")
    if cfg.init_from is not None:
        _require(_is_checkpoint(cfg.init_from) or _planned(cfg.init_from) is not None, "init_from", cfg.init_from,
                 "needs a .ckpt file, an llmexp run folder with checkpoints/last.ckpt, or a transformers "
                 "folder (config.json + *.safetensors)")
    if cfg.resume is not None:
        _require(os.path.exists(os.path.expanduser(cfg.resume)), "resume", cfg.resume, "no such checkpoint or run folder")


# Stages that start from a trained model: init_from is required, and its saved config decides
# the model (and tokenizer) so a user never repeats model=... for them.
POST_TRAINING = ("sft", "reward", "dpo", "rlhf")
SHAPE_KEYS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len", "tie_embeddings", "vocab_size",
              "head_dim", "attention_bias", "qk_norm", "sliding_window", "rope_scaling", "rope_factor")
CHAT_TEMPLATES = ("model", "chatml", "plain")  # or a .jinja file
TRUNCATIONS = ("error", "left", "right", "drop")
LORA_TARGETS = ("wq", "wk", "wv", "wo", "w1", "w2", "w3")
# A pipeline validates every step before the first one runs: the run folders of earlier steps
# do not exist yet, so it registers here the config each will have (run folder -> config dict).
PLANNED_RUNS: dict[str, dict] = {}


def _planned(path: str) -> dict | None:
    return PLANNED_RUNS.get(os.path.abspath(os.path.expanduser(path)))


def init_from_config(path: str) -> dict | None:
    """The resolved config saved with an llmexp run folder or checkpoint (its run folder's
    config.yaml; a checkpoint file's run folder is two levels up), a planned pipeline step's,
    or None when there is none."""
    planned = _planned(path)
    if planned is not None:
        return planned
    path = os.path.expanduser(path)
    run_dir = path if os.path.isdir(path) else os.path.dirname(os.path.dirname(os.path.abspath(path)))
    saved = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(saved):
        return None
    import yaml

    with open(saved) as f:
        return yaml.safe_load(f)


def _default_model() -> dict:
    """The model preset config.yaml selects when no model= is given, as its YAML says."""
    import yaml

    from llmexp.config.compose import conf_dir

    defaults = yaml.safe_load((conf_dir() / "config.yaml").read_text())["defaults"]
    name = next(d["model"] for d in defaults if isinstance(d, dict) and "model" in d)
    return yaml.safe_load((conf_dir() / "model" / f"{name}.yaml").read_text())


def _adopt_init_from(cfg: Config) -> None:
    from dataclasses import fields

    from llmexp.config.schema import ModelConfig, TokenizerConfig

    stage = cfg.stage.name
    _require(cfg.init_from is not None, "init_from", None,
             f"stage={stage} starts from a trained model: give an llmexp run folder or checkpoint")
    saved = init_from_config(cfg.init_from)
    _require(saved is not None, "init_from", cfg.init_from,
             "needs an llmexp run folder (with config.yaml and checkpoints/last.ckpt) or a checkpoint inside one")
    _require(_is_checkpoint(cfg.init_from) or _planned(cfg.init_from) is not None, "init_from", cfg.init_from,
             "needs a .ckpt file or an llmexp run folder with checkpoints/last.ckpt")
    old = saved["model"]
    given = {f.name: getattr(cfg.model, f.name) for f in fields(ModelConfig)}
    untouched = all(given[k] == v for k, v in _default_model().items() if k in given)
    if not untouched:  # the user chose a model: it must be the one in the checkpoint
        for key in SHAPE_KEYS:
            if key in old and given[key] != old[key]:
                _require(False, f"model.{key}", given[key],
                         f"init_from's model has {key}={old[key]!r}: stage={stage} takes the model from "
                         "init_from, drop the model override")
    cfg.model = ModelConfig(**{k: v for k, v in old.items() if k in given})
    tok = saved["tokenizer"]
    cfg.tokenizer = TokenizerConfig(**{f.name: tok[f.name] for f in fields(TokenizerConfig) if f.name in tok})


def _check_post_training(cfg: Config) -> None:
    s, t = cfg.stage, cfg.trainer
    _require(bool(s.dataset), "stage.dataset", s.dataset, "a JSONL file, folder or glob, hf:<name>, or synthetic:<task>")
    if not s.dataset.startswith(("hf:", "synthetic:")):
        pattern = os.path.expanduser(s.dataset)
        _require(os.path.exists(pattern) or bool(glob.glob(pattern, recursive=True)), "stage.dataset", s.dataset,
                 "no such file, folder or glob match (or use hf:<name>, synthetic:<task>)")
    _require(0.0 < s.val_fraction < 0.5, "stage.val_fraction", s.val_fraction, "must be in (0, 0.5)")
    _require(s.chat_template in CHAT_TEMPLATES or (s.chat_template.endswith(".jinja") and os.path.isfile(
        os.path.expanduser(s.chat_template))), "stage.chat_template", s.chat_template,
        "model (the model's own Jinja template, else chatml/plain), chatml, plain, or an existing .jinja file")
    _one_of("stage.truncation", s.truncation, TRUNCATIONS)
    _positive("stage.synthetic_records", s.synthetic_records)
    if "<|im_start|>" not in cfg.tokenizer.special_tokens or "<|im_end|>" not in cfg.tokenizer.special_tokens:
        _require(s.chat_template != "chatml", "stage.chat_template", s.chat_template,
                 "chatml needs <|im_start|> and <|im_end|> among init_from's tokenizer.special_tokens: use plain")
    lora = s.lora
    if lora.enabled:
        _positive("stage.lora.rank", lora.rank)
        _positive("stage.lora.alpha", lora.alpha)
        _require(0.0 <= lora.dropout < 1.0, "stage.lora.dropout", lora.dropout, "must be in [0, 1)")
        _require(len(lora.targets) > 0 and set(lora.targets) <= set(LORA_TARGETS), "stage.lora.targets",
                 lora.targets, "a non-empty list of " + ", ".join(LORA_TARGETS))
    if lora.quantize is not None:
        _one_of("stage.lora.quantize", lora.quantize, ("nf4",))
        _require(lora.enabled, "stage.lora.quantize", lora.quantize, "QLoRA needs stage.lora.enabled=true")
        _require(t.accelerator == "gpu" or (t.accelerator == "auto" and _has_cuda()), "stage.lora.quantize",
                 lora.quantize, "4-bit QLoRA needs bitsandbytes on a CUDA GPU: set null on this machine")
        import importlib.util

        _require(importlib.util.find_spec("bitsandbytes") is not None, "stage.lora.quantize", lora.quantize,
                 "needs the bitsandbytes package: pip install bitsandbytes")
    if s.name == "sft":
        _one_of("stage.loss_on", s.loss_on, ("assistant", "all"))
    if s.name == "dpo":
        _positive("stage.beta", s.beta)
        _one_of("stage.loss", s.loss, ("sigmoid", "ipo"))
        _one_of("stage.reference", s.reference, ("model", "precomputed"))
    if s.name == "rlhf":
        _check_rlhf(cfg)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _check_rlhf(cfg: Config) -> None:
    s = cfg.stage
    _one_of("stage.algorithm", s.algorithm, ("ppo", "grpo"))
    _one_of("stage.reward", s.reward, ("callable", "model", "judge"))
    for key in ("group_size", "max_new_tokens", "temperature", "ppo_epochs", "clip", "val_prompts"):
        _positive(f"stage.{key}", getattr(s, key))
    _positive("stage.top_k", s.top_k, optional=True)
    _require(s.kl_coef >= 0, "stage.kl_coef", s.kl_coef, "must be >= 0")
    _require(0.0 < s.gamma <= 1.0, "stage.gamma", s.gamma, "must be in (0, 1]")
    _require(0.0 <= s.gae_lambda <= 1.0, "stage.gae_lambda", s.gae_lambda, "must be in [0, 1]")
    if s.algorithm == "grpo":
        _require(s.group_size >= 2, "stage.group_size", s.group_size, "GRPO compares samples within a group: >= 2")
    if s.reward == "callable":
        fn = s.reward_fn or ""
        _require(":" in fn and all(fn.split(":", 1)), "stage.reward_fn", s.reward_fn,
                 "reward=callable needs 'package.module:function' taking (prompt, response) -> float")
    else:
        key = "reward_model" if s.reward == "model" else "judge_model"
        path = getattr(s, key)
        _require(path is not None and (_is_checkpoint(path) or _planned(path) is not None), f"stage.{key}", path,
                 f"reward={s.reward} needs an llmexp run folder or checkpoint")
        other = init_from_config(path)
        if other is not None and s.reward == "model":
            _require(other["stage"]["name"] == "reward", f"stage.{key}", path,
                     f"is a stage={other['stage']['name']} run: needs a stage=reward run")
        if other is not None:
            mine = {k: cfg.tokenizer.__dict__[k] for k in ("kind", "name", "vocab_size", "special_tokens")}
            theirs = {k: other["tokenizer"].get(k) for k in mine}
            _require(mine == theirs, f"stage.{key}", path,
                     f"its tokenizer {theirs} differs from the policy's {mine}: scores would read other tokens")
    t = cfg.trainer
    per_step = t.micro_batch_size * t.devices * t.num_nodes
    _require(t.global_batch_size == per_step, "trainer.global_batch_size", t.global_batch_size,
             f"stage=rlhf updates once per rollout batch, without accumulation: set it to micro_batch_size x "
             f"devices x num_nodes = {per_step} (micro_batch_size is prompts per rollout)")
    seq = cfg.trainer.seq_len or cfg.model.max_seq_len
    _require(s.max_new_tokens < seq, "stage.max_new_tokens", s.max_new_tokens,
             f"must leave room for the prompt in trainer.seq_len={seq}")


def _is_checkpoint(path: str) -> bool:
    from llmexp.hf_config import is_hf_folder  # os/json only: keeps this pass free of torch

    from llmexp.parallel.checkpoint import is_checkpoint  # file or sharded (DCP) folder; no torch

    path = os.path.expanduser(path)
    return is_checkpoint(path) or is_checkpoint(os.path.join(path, "checkpoints", "last.ckpt")) or is_hf_folder(path)


def _check_eval(cfg: Config) -> None:
    e = cfg.eval
    _positive("eval.batch_size", e.batch_size)
    _positive("eval.max_gen_toks", e.max_gen_toks)
    _one_of("eval.dtype", e.dtype, ("float32", "bfloat16", "float16"))
    _positive("eval.every_n_steps", e.every_n_steps, optional=True)
    _positive("eval.limit", e.limit, optional=True)
    if e.num_fewshot is not None:
        _require(e.num_fewshot >= 0, "eval.num_fewshot", e.num_fewshot, "must be >= 0")
    if e.every_n_steps is not None:
        _require(bool(e.tasks), "eval.every_n_steps", e.every_n_steps, "needs eval tasks: eval=smoke, eval=standard or eval.tasks=[...]")
    if e.intrinsic_text not in (None, "val"):
        _require(os.path.isfile(os.path.expanduser(e.intrinsic_text)), "eval.intrinsic_text", e.intrinsic_text,
                 "'val' (the data group's held-out documents) or a .txt/.jsonl file")
    if cfg.stage.name == "eval":
        _require(cfg.init_from is not None, "init_from", None,
                 "stage=eval evaluates a model: an llmexp run folder or .ckpt, or a transformers folder")
        _require(bool(e.tasks) or e.intrinsic_text is not None, "eval", e.name,
                 "stage=eval needs tasks or intrinsic text: eval=smoke, eval=standard or eval.tasks=[...]")


def _adopt_hf_folder(cfg: Config) -> bool:
    """init_from a transformers folder: model.* comes from its config.json (llmexp/interop),
    and the tokenizer is the folder's own (converted to tiktoken's format)."""
    from dataclasses import fields

    from llmexp.config.schema import ModelConfig
    from llmexp.hf_config import hf_model_fields, is_hf_folder, read_hf_config

    if cfg.init_from is not None and cfg.init_from.startswith(HUB_PREFIX):
        try:  # the snapshot folder (its path names the commit) stands for the hub reference from here on
            cfg.init_from = str(resolve_hub(cfg.init_from))
        except HubError as err:
            raise ConfigError("init_from", cfg.init_from, str(err)) from None
    if cfg.init_from is None or not is_hf_folder(cfg.init_from):
        return False
    try:
        adopted = hf_model_fields(read_hf_config(cfg.init_from))
    except (ValueError, KeyError) as err:
        raise ConfigError("init_from", cfg.init_from, f"transformers folder: {err}") from None
    names = {f.name for f in fields(ModelConfig)}
    cfg.model = ModelConfig(**{k: v for k, v in adopted.items() if k in names}, init_std=cfg.model.init_std)
    # The folder's tokenizer is the one used (its vocabulary may be smaller than the model's,
    # padded one); the data pipeline loads it as tokenizer.kind=hf.
    folder = Path(cfg.init_from).expanduser().resolve()
    cfg.tokenizer = TokenizerConfig(kind="hf", name=str(folder), vocab_size=adopted["vocab_size"],
                                    special_tokens=_hf_special_tokens(folder), cache_dir=cfg.tokenizer.cache_dir)
    return True


def _hf_special_tokens(folder: Path) -> list[str]:
    """The special tokens a transformers folder's tokenizer.json declares (what chat templates
    can use); empty when it has none or no tokenizer.json (kind=hf then refuses it)."""
    import json

    path = folder / "tokenizer.json"
    if not path.is_file():
        return []
    added = json.loads(path.read_text(encoding="utf-8")).get("added_tokens", [])
    return [t["content"] for t in added if t.get("special")]


def _check_model(cfg: Config) -> None:
    m = cfg.model
    for key in ("n_layers", "d_model", "n_heads", "ffn_dim", "max_seq_len"):
        _positive(f"model.{key}", getattr(m, key))
    _positive("model.rope_theta", m.rope_theta)
    _positive("model.norm_eps", m.norm_eps)
    _positive("model.init_std", m.init_std)
    if m.head_dim is None:
        _require(m.d_model % m.n_heads == 0, "model.n_heads", m.n_heads, f"must divide model.d_model={m.d_model}")
        head_dim = m.d_model // m.n_heads
        _require(head_dim % 2 == 0, "model.n_heads", m.n_heads, f"head dim d_model/n_heads={head_dim} must be even for RoPE")
    else:
        _require(m.head_dim > 0 and m.head_dim % 2 == 0, "model.head_dim", m.head_dim, "an even number > 0 (RoPE pairs)")
    _check_model_family_options(m)
    if m.n_kv_heads is not None:
        _positive("model.n_kv_heads", m.n_kv_heads)
        _require(m.n_heads % m.n_kv_heads == 0, "model.n_kv_heads", m.n_kv_heads, f"must divide model.n_heads={m.n_heads}")
    if m.vocab_size is not None:
        _require(
            m.vocab_size >= cfg.tokenizer.vocab_size, "model.vocab_size", m.vocab_size,
            f"must be >= tokenizer.vocab_size={cfg.tokenizer.vocab_size} (null: take the tokenizer's)",
        )


MODEL_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
ATTENTION_BIASES = ("none", "qkv", "all")
ROPE_SCALINGS = ("none", "linear", "llama3", "yarn")


def _check_model_family_options(m) -> None:
    """The options of open model families (docs/models.md)."""
    _one_of("model.family", m.family, MODEL_FAMILIES)
    _one_of("model.attention_bias", m.attention_bias, ATTENTION_BIASES)
    _one_of("model.rope_scaling", m.rope_scaling, ROPE_SCALINGS)
    _positive("model.sliding_window", m.sliding_window, optional=True)
    if m.rope_scaling != "none":
        _require(m.rope_factor >= 1.0, "model.rope_factor", m.rope_factor, f"rope_scaling={m.rope_scaling} needs a factor >= 1")
    if m.rope_scaling in ("llama3", "yarn"):
        _positive("model.rope_original_max_seq_len", m.rope_original_max_seq_len)
    if m.rope_scaling == "llama3":
        _require(m.rope_high_freq_factor > m.rope_low_freq_factor > 0, "model.rope_high_freq_factor",
                 m.rope_high_freq_factor, f"must exceed model.rope_low_freq_factor={m.rope_low_freq_factor} > 0")


def _check_tokenizer(cfg: Config) -> None:
    t = cfg.tokenizer
    _one_of("tokenizer.kind", t.kind, ("bpe", "tiktoken", "hf"))
    if t.kind == "hf":  # a transformers folder's tokenizer: its special tokens are its own
        _require(os.path.isfile(os.path.join(os.path.expanduser(t.name), "tokenizer.json")), "tokenizer.name",
                 t.name, "kind=hf needs a transformers folder with tokenizer.json")
        return
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
    names = []
    for i, src in enumerate(d.sources):
        key = f"data.sources.{i}"
        _one_of(f"{key}.kind", src.kind, SOURCE_KINDS)
        _require(src.weight > 0, f"{key}.weight", src.weight, "must be > 0 (leave the source out instead of weighting it 0)")
        names.append(src.name or src.kind)
        # The name becomes a cache folder and a metric name (data/tokens_<name>).
        _require(re.fullmatch(r"[A-Za-z0-9_.-]+", names[-1]) is not None, f"{key}.name", src.name,
                 "letters, digits, '_', '.' and '-' only")
        _require(names.count(names[-1]) == 1, f"{key}.name", src.name, f"{names[-1]!r} is taken: give each source a unique name")
        _check_clean(f"{key}.clean", src.clean)
        if src.kind == "embedded":
            continue
        if src.template is not None:
            fields = [f for _, f, _, _ in string.Formatter().parse(src.template) if f]
            _require(bool(fields), f"{key}.template", src.template, "needs at least one {field}")
        else:
            _require(bool(src.text_field), f"{key}.text_field", src.text_field, "name the field holding the text")
        if src.kind == "hf":
            _require(bool(src.dataset or src.path), f"{key}.dataset", src.dataset,
                     "kind=hf needs a hub name, or a path (data files or a save_to_disk folder)")
            if not src.path:
                continue
        _require(bool(src.path), f"{key}.path", src.path, f"required for kind={src.kind}")
        pattern = os.path.expanduser(src.path)
        found = os.path.exists(pattern) or bool(glob.glob(pattern, recursive=True))
        _require(found, f"{key}.path", src.path, "no such file, folder or glob match")
    _require(0.0 < d.val_fraction < 0.5, "data.val_fraction", d.val_fraction, "must be in (0, 0.5)")
    _one_of("data.on_exhausted", d.on_exhausted, ON_EXHAUSTED)
    _positive("data.shard_bytes", d.shard_bytes)
    _positive("data.num_proc", d.num_proc)


def _check_clean(key: str, c) -> None:
    if c.unicode_normalize is not None:
        _one_of(f"{key}.unicode_normalize", c.unicode_normalize, ("NFC", "NFKC", "NFD", "NFKD"))
    _require(c.min_chars >= 0, f"{key}.min_chars", c.min_chars, "must be >= 0")
    _require(c.min_words >= 0, f"{key}.min_words", c.min_words, "must be >= 0")
    if c.max_chars is not None:
        _require(c.max_chars >= max(1, c.min_chars), f"{key}.max_chars", c.max_chars, f"must be >= min_chars={c.min_chars}")
    for name in ("max_symbol_ratio", "max_repeated_line_fraction"):
        value = getattr(c, name)
        if value is not None:
            _require(0.0 <= value <= 1.0, f"{key}.{name}", value, "must be in [0, 1]")
    _require(0.0 < c.near_dedup_threshold < 1.0, f"{key}.near_dedup_threshold", c.near_dedup_threshold, "must be in (0, 1)")
    _require(c.near_dedup_num_perm >= 16, f"{key}.near_dedup_num_perm", c.near_dedup_num_perm, "must be >= 16")
    _positive(f"{key}.near_dedup_ngram", c.near_dedup_ngram)


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
    _one_of("parallelism.activation_checkpointing_mode", p.activation_checkpointing_mode, AC_MODES)
    world = t.devices * t.num_nodes
    if p.strategy == "single":
        _require(world == 1, "parallelism.strategy", p.strategy, f"runs on one device, but trainer.devices x num_nodes = {world}: use ddp")
    if t.accelerator == "cpu":
        _require(p.precision != "16-mixed", "parallelism.precision", p.precision, "16-mixed needs a GPU; on CPU use 32 or bf16-mixed")
    if p.strategy == "deepspeed":
        import importlib.util

        _require(importlib.util.find_spec("deepspeed") is not None, "parallelism.strategy", p.strategy,
                 "needs the deepspeed package (pip install deepspeed), which is not installed; fsdp gives ZeRO-3 without it")
        _one_of("parallelism.deepspeed_stage", p.deepspeed_stage, (2, 3))
    if p.cpu_offload:
        _require(p.strategy in ("fsdp", "deepspeed"), "parallelism.cpu_offload", True, f"offload is an fsdp or deepspeed option; strategy is {p.strategy}")
    if min(t.devices, t.num_nodes, t.micro_batch_size) < 1:
        return  # _check_trainer names the bad count
    from llmexp.plan import layout_of

    if p.tensor_parallel_size is not None:
        _require(p.strategy == "fsdp_tp", "parallelism.tensor_parallel_size", p.tensor_parallel_size,
                 f"only fsdp_tp takes a TP degree (tp uses all {world} devices); strategy is {p.strategy}")
        _require(p.tensor_parallel_size >= 1 and world % p.tensor_parallel_size == 0, "parallelism.tensor_parallel_size",
                 p.tensor_parallel_size, f"must divide trainer.devices x num_nodes = {world}")
    layout = layout_of(cfg)
    if layout.tp > 1:
        m, tp = cfg.model, layout.tp
        key = "parallelism.tensor_parallel_size" if p.strategy == "fsdp_tp" else "trainer.devices"
        kv = m.n_kv_heads or m.n_heads
        for what, n in (("model.n_heads", m.n_heads), ("model.n_kv_heads", kv), ("model.ffn_dim", m.ffn_dim)):
            _require(n % tp == 0, key, tp, f"TP degree {tp} must divide {what}={n}")
        seq = t.seq_len or m.max_seq_len  # sequence parallelism splits norms' inputs along the sequence
        _require(seq % tp == 0, key, tp, f"TP degree {tp} must divide the sequence length {seq}")
    per_step = t.micro_batch_size * layout.dp
    _require(
        t.global_batch_size % per_step == 0, "trainer.global_batch_size", t.global_batch_size,
        f"must be a multiple of micro_batch_size x data-parallel degree = {t.micro_batch_size} x {layout.dp} "
        f"({layout.strategy}: dp {layout.dp} x tp {layout.tp} = {layout.world} devices)",
    )


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
