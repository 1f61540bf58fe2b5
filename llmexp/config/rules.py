"""Rules that span config groups: each group's own rules sit beside its dataclass in
llmexp/config/groups/, and choices beside their fields. `check_rules` reads nothing but the
config and the paths it names (plus `planned`: run folders a pipeline will create)."""
from __future__ import annotations

import importlib.util
import os

from llmexp.accelerators import ACCELERATORS, gpu_present
from llmexp.artifacts import PlannedRuns, is_model_source, saved_config
from llmexp.config.checks import check_choices, require
from llmexp.config.errors import ConfigError
from llmexp.config.groups.data import check_data
from llmexp.config.groups.eval import check_eval
from llmexp.config.groups.model import check_model
from llmexp.config.groups.optimizer import check_optimizer
from llmexp.config.groups.parallelism import check_parallelism
from llmexp.config.groups.plan import check_plan
from llmexp.config.groups.stage import POST_TRAINING, check_stage, reward_sources
from llmexp.config.groups.tokenizer import check_tokenizer
from llmexp.config.groups.trainer import check_trainer
from llmexp.config.schema import Config
from llmexp.io import checkpoint_file_problem
from llmexp.layout import MODEL_PARALLEL, PIPELINED, Layout, world_size
from llmexp.plan import layout_of

DRY_RUN = (False, True, "json")
TP_DEGREE = ("fsdp_tp", "fsdp_tp_pp")  # layouts whose TP degree is parallelism.tensor_parallel_size
PP_DEGREE = ("fsdp_pp", "fsdp_tp_pp")  # ... whose pipeline degree is parallelism.pipeline_parallel_size


def normalize_dry_run(value: object) -> object:
    """`dry_run` arrives as a bool or a string from the command line."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def check_rules(cfg: Config, planned: PlannedRuns = {}) -> None:
    """Every rule, each group's first, then those across groups; the first failure raises."""
    require(cfg.dry_run in DRY_RUN, "dry_run", cfg.dry_run, "allowed: false, true, json")
    check_choices(cfg)
    check_model(cfg.model)
    _check_vocab(cfg)
    check_tokenizer(cfg.tokenizer)
    check_data(cfg.data)
    check_optimizer(cfg.optimizer)
    check_parallelism(cfg.parallelism)
    check_trainer(cfg.trainer)
    _check_devices(cfg)
    _check_gpu_only(cfg)
    _check_layout(cfg)
    _check_sequence(cfg)
    check_plan(cfg.plan)
    _check_budget(cfg)
    check_eval(cfg.eval)
    _check_eval_stage(cfg)
    check_stage(cfg.stage)
    if cfg.stage.name in POST_TRAINING:
        _check_post_training(cfg, planned)
    for i, step in enumerate(cfg.pipeline):
        require(bool(step.name) and "/" not in step.name, f"pipeline.{i}.name", step.name, "a non-empty name without '/'")
    if cfg.init_from is not None:
        require(is_model_source(cfg.init_from, planned), "init_from", cfg.init_from,
                "needs a .ckpt file, an llmexp run folder with checkpoints/last.ckpt, or a transformers "
                "folder (config.json + *.safetensors)")
        _check_checkpoint_file("init_from", cfg.init_from)
    if cfg.resume is not None:
        require(os.path.exists(os.path.expanduser(cfg.resume)), "resume", cfg.resume, "no such checkpoint or run folder")
        _check_checkpoint_file("resume", cfg.resume)
    _check_environment(cfg)


# What the environment must give a run, checked without importing torch: a writable folder for
# the run, a GPU when one is asked for by name, checkpoint files torch can read.
def _check_checkpoint_file(key: str, path: str) -> None:
    problem = checkpoint_file_problem(path)
    require(problem is None, key, path, f"{problem}: give a checkpoint llmexp wrote (or a run folder)")


def _check_environment(cfg: Config) -> None:
    for key in ("run_dir", "out_dir"):
        if getattr(cfg, key) is not None:
            _check_writable_folder(key, getattr(cfg, key))
    if cfg.trainer.accelerator == "gpu" and not cfg.dry_run:
        require(gpu_present(), "trainer.accelerator", "gpu",
                "no GPU is visible on this machine (no NVIDIA or ROCm device, or CUDA_VISIBLE_DEVICES hides them): "
                "use trainer.accelerator=cpu or auto")


def _check_writable_folder(key: str, folder: str) -> None:
    path = os.path.abspath(os.path.expanduser(folder))
    require(not os.path.exists(path) or os.path.isdir(path), key, folder, "exists and is not a folder: name a folder")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    require(os.path.isdir(existing) and os.access(existing, os.W_OK | os.X_OK) and not _virtual_fs(existing), key, folder,
            f"cannot be created or written here ({existing} is not a writable folder): choose another folder")


def _virtual_fs(path: str) -> bool:
    """/proc and /sys accept no run folders, whatever os.access says to root."""
    return os.path.realpath(path).split(os.sep)[1:2] in (["proc"], ["sys"], ["dev"])


def _check_vocab(cfg: Config) -> None:
    m = cfg.model
    if m.vocab_size is not None:
        require(m.vocab_size >= cfg.tokenizer.vocab_size, "model.vocab_size", m.vocab_size,
                f"must be >= tokenizer.vocab_size={cfg.tokenizer.vocab_size} (null: take the tokenizer's)")


def _check_devices(cfg: Config) -> None:
    p, t = cfg.parallelism, cfg.trainer
    world = t.devices * t.num_nodes
    if p.strategy == "single":
        require(world == 1, "parallelism.strategy", p.strategy, f"runs on one device, but trainer.devices x num_nodes = {world}: use ddp")
    if t.accelerator == "cpu":
        require(p.precision != "16-mixed", "parallelism.precision", p.precision, "16-mixed needs a GPU; on CPU use 32 or bf16-mixed")
    if p.tensor_parallel_size is not None:
        require(p.strategy in TP_DEGREE, "parallelism.tensor_parallel_size", p.tensor_parallel_size,
                f"only {' and '.join(TP_DEGREE)} take a TP degree (tp uses all {world} devices); strategy is {p.strategy}")
        require(p.tensor_parallel_size >= 1 and world % p.tensor_parallel_size == 0, "parallelism.tensor_parallel_size",
                p.tensor_parallel_size, f"must divide trainer.devices x num_nodes = {world}")
    for key in ("shard_size", "pipeline_parallel_size"):
        n = getattr(p, key)
        if n is not None:
            require(n >= 1 and world % n == 0, f"parallelism.{key}", n, f"must divide trainer.devices x num_nodes = {world}")
    if p.strategy == "fsdp_tp_pp":
        tp, pp = p.tensor_parallel_size or t.devices, p.pipeline_parallel_size or t.num_nodes
        require(world % (tp * pp) == 0, "parallelism.pipeline_parallel_size", pp,
                f"TP x PP = {tp} x {pp} must divide trainer.devices x num_nodes = {world} (dp = world / (tp x pp))")


def _check_gpu_only(cfg: Config) -> None:
    """Context parallelism (ring attention over NCCL) and float8 (fp8 tensor cores) run on GPUs
    only: refused for trainer.accelerator=cpu, and for a run (not a plan) on a machine without a
    GPU. A plan (dry_run) for plan.accelerator is made anywhere."""
    p, t = cfg.parallelism, cfg.trainer
    for key, value, asked in (("context_parallel_size", p.context_parallel_size, p.context_parallel_size > 1),
                              ("float8", p.float8, p.float8)):
        if not asked:
            continue
        require(t.accelerator != "cpu", f"parallelism.{key}", value,
                "runs on GPUs only: remove it for trainer.accelerator=cpu")
        require(bool(cfg.dry_run) or gpu_present(), f"parallelism.{key}", value,
                "runs on GPUs only and no GPU is visible on this machine: remove it, or plan only (dry_run=true)")
    if p.float8:
        device = ACCELERATORS[cfg.plan.accelerator]
        require(device.peak_fp8_flops > 0, "parallelism.float8", True,
                f"{device.name} has no float8 tensor cores in llmexp's table: "
                + ", ".join(a.name for a in ACCELERATORS.values() if a.peak_fp8_flops) + " do")
        require(bool(cfg.dry_run) or importlib.util.find_spec("torchao") is not None, "parallelism.float8", True,
                "needs the torchao package, which is not installed: pip install torchao")


def _check_context_parallel(cfg: Config, layout) -> None:
    """Ring attention splits each sequence into 2 x cp chunks (rank i holds chunks i and
    2cp-1-i, balancing causal work) and then sequence parallelism splits a rank's share by tp;
    it replaces plain causal attention, so masks (packed post-training rows, sliding windows)
    have no CP path."""
    cp, key = layout.cp, "parallelism.context_parallel_size"
    world = world_size(cfg)
    require(world % (cp * layout.tp) == 0, key, cp, f"CP x TP = {cp} x {layout.tp} must divide trainer.devices x num_nodes = {world}")
    seq = cfg.trainer.seq_len or cfg.model.max_seq_len
    require(seq % (2 * cp * layout.tp) == 0, key, cp,
            f"the sequence length {seq} must be a multiple of 2 x CP x TP = {2 * cp * layout.tp} (load-balanced chunks)")
    require(cfg.stage.name == "pretrain", key, cp, f"context parallelism shards pretraining windows; stage={cfg.stage.name} has none")
    require(cfg.model.sliding_window is None, key, cp, "ring attention is plain causal: model.sliding_window must be null")


def _check_layout(cfg: Config) -> None:
    p, t = cfg.parallelism, cfg.trainer
    layout = layout_of(cfg)
    _refuse_idle_parallelism_keys(cfg, layout.strategy)
    if layout.cp > 1:
        _check_context_parallel(cfg, layout)
    if layout.tp > 1:
        m, tp = cfg.model, layout.tp
        key = "parallelism.tensor_parallel_size" if p.strategy in TP_DEGREE else "trainer.devices"
        kv = m.n_kv_heads or m.n_heads
        for what, n in (("model.n_heads", m.n_heads), ("model.n_kv_heads", kv), ("model.ffn_dim", m.ffn_dim)):
            require(n % tp == 0, key, tp, f"TP degree {tp} must divide {what}={n}")
        seq = t.seq_len or m.max_seq_len  # sequence parallelism splits norms' inputs along the sequence
        require(seq % tp == 0, key, tp, f"TP degree {tp} must divide the sequence length {seq}")
    if layout.pp > 1 or p.strategy in PIPELINED:
        _check_pipeline(cfg, layout)
    per_step = t.micro_batch_size * layout.dp
    require(
        t.global_batch_size % per_step == 0, "trainer.global_batch_size", t.global_batch_size,
        f"must be a multiple of micro_batch_size x data-parallel degree = {t.micro_batch_size} x {layout.dp} "
        f"({layout.describe()}: {layout.world} devices)",
    )


def _check_pipeline(cfg: Config, layout: Layout) -> None:
    """Pipeline parallelism: stages the blocks can be cut into, enough micro-batches to fill
    the pipeline, and what a cut model cannot do (tied embeddings span the first and last stage)."""
    p, t, m = cfg.parallelism, cfg.trainer, cfg.model
    key = "parallelism.pipeline_parallel_size" if p.strategy in PP_DEGREE else "trainer.devices"
    require(layout.pp >= 2, key, layout.pp, f"{p.strategy} needs >= 2 pipeline ranks "
            f"({' and '.join(PP_DEGREE)}: parallelism.pipeline_parallel_size, default trainer.num_nodes={t.num_nodes})")
    require(cfg.stage.name == "pretrain", "parallelism.strategy", p.strategy,
            f"pipeline parallelism runs stage=pretrain only; stage={cfg.stage.name}: use fsdp or fsdp_tp")
    require(not m.tie_embeddings, "model.tie_embeddings", True,
            "tied embeddings would span the first and the last pipeline stage: untie them or use fsdp")
    require(p.precision != "16-mixed", "parallelism.precision", p.precision,
            "fp16's loss scaling does not reach inside a pipeline schedule: use bf16-mixed")
    require(p.distributed_checkpoint, "parallelism.distributed_checkpoint", False,
            "pipeline stages save their own blocks: checkpoints are DCP folders (true)")
    stages = layout.pp * p.pp_stages_per_rank
    if p.pp_split_points is not None:
        points = list(p.pp_split_points)
        require(len(points) == stages - 1 and points == sorted(set(points)) and 0 < points[0] and points[-1] < m.n_layers,
                "parallelism.pp_split_points", points, f"{stages - 1} increasing block indices in 1..{m.n_layers - 1} "
                f"({stages} stages = pp {layout.pp} x {p.pp_stages_per_rank} per rank)")
    else:
        require(m.n_layers % stages == 0, "model.n_layers", m.n_layers,
                f"must divide into {stages} equal pipeline stages (pp {layout.pp} x {p.pp_stages_per_rank} per rank): "
                "or set parallelism.pp_split_points")
    if t.global_batch_size % (t.micro_batch_size * layout.dp):
        return  # the batch rule below names it
    micro = t.global_batch_size // (t.micro_batch_size * layout.dp)
    need = f"a multiple of pp {layout.pp}" if p.pp_schedule == "interleaved_1f1b" else f">= pp {layout.pp}"
    ok = micro % layout.pp == 0 if p.pp_schedule == "interleaved_1f1b" else micro >= layout.pp
    require(ok, "trainer.global_batch_size", t.global_batch_size,
            f"gives {micro} micro-batches per step (global / (micro_batch_size {t.micro_batch_size} x dp {layout.dp})); "
            f"the {p.pp_schedule} pipeline needs {need}")


# Keys only some layouts read: set away from their default under another layout, refused
# (the strategy named is the resolved one: parallelism=auto picks it by size).
LAYOUT_ONLY = {"reshard_after_forward": ("fsdp", "fsdp_tp", "hsdp", "fsdp_pp", "fsdp_tp_pp"), "meta_init": MODEL_PARALLEL,
               "distributed_checkpoint": MODEL_PARALLEL, "deepspeed_stage": ("deepspeed",), "shard_size": ("hsdp",),
               "pipeline_parallel_size": PP_DEGREE, "pp_schedule": PIPELINED, "pp_stages_per_rank": PIPELINED,
               "pp_split_points": PIPELINED}


def _refuse_idle_parallelism_keys(cfg: Config, strategy: str) -> None:
    p, defaults = cfg.parallelism, type(cfg.parallelism)()
    for key, users in LAYOUT_ONLY.items():
        value = getattr(p, key)
        require(strategy in users or value == getattr(defaults, key), f"parallelism.{key}", value,
                f"has no effect under strategy {strategy} (only {', '.join(users)}): remove it or choose one of those")


def _check_sequence(cfg: Config) -> None:
    t, m = cfg.trainer, cfg.model
    if t.seq_len is not None:
        require(t.seq_len <= m.max_seq_len, "trainer.seq_len", t.seq_len, f"must be <= model.max_seq_len={m.max_seq_len}")


def _check_budget(cfg: Config) -> None:
    t = cfg.trainer
    if cfg.plan.name == "explicit":
        require(t.max_steps is not None or t.max_tokens is not None, "trainer.max_steps", None,
                "plan=explicit needs a budget: set trainer.max_steps or trainer.max_tokens")


def _check_eval_stage(cfg: Config) -> None:
    e = cfg.eval
    if cfg.stage.name == "eval":
        require(bool(e.tasks) or e.intrinsic_text is not None, "eval", e.name,
                "stage=eval needs tasks or intrinsic text: eval=smoke, eval=standard or eval.tasks=[...]")
    elif e.tasks and e.every_n_steps is None:  # a training stage scores tasks only every eval.every_n_steps
        key, value = ("eval.tasks", e.tasks) if e.name == "none" else ("eval", e.name)  # what the user typed
        raise ConfigError(key, value, f"stage={cfg.stage.name} scores these only every eval.every_n_steps=N steps "
                          "of training: set it, or score the trained run with stage=eval init_from=<run>")


def _check_post_training(cfg: Config, planned: PlannedRuns) -> None:
    s, t = cfg.stage, cfg.trainer
    if "<|im_start|>" not in cfg.tokenizer.special_tokens or "<|im_end|>" not in cfg.tokenizer.special_tokens:
        require(s.chat_template != "chatml", "stage.chat_template", s.chat_template,
                "chatml needs <|im_start|> and <|im_end|> among init_from's tokenizer.special_tokens: use plain")
    if s.lora.quantize is not None:
        require(t.accelerator == "gpu" or (t.accelerator == "auto" and gpu_present()), "stage.lora.quantize",
                s.lora.quantize, "4-bit QLoRA needs bitsandbytes on a CUDA GPU: set null on this machine")
        require(importlib.util.find_spec("bitsandbytes") is not None, "stage.lora.quantize", s.lora.quantize,
                "needs the bitsandbytes package: pip install bitsandbytes")
    if s.name == "dpo":
        require(not (s.loss_type == "kto" and t.micro_batch_size < 2), "trainer.micro_batch_size", t.micro_batch_size,
                "KTO's KL estimate pairs rows with other rows' replies: >= 2")
    if s.name == "rlhf":
        _check_rlhf_sources(cfg, planned)
        # The heads have TP plans; generation has none: its prefill and one-token decode steps
        # cannot be split along the sequence, as the plan's sequence parallelism does.
        require(layout_of(cfg).tp == 1, "parallelism.strategy", cfg.parallelism.strategy,
                "stage=rlhf samples its rollouts token by token, which tensor parallelism's sequence split "
                "cannot run: use fsdp or ddp")
        per_step = t.micro_batch_size * t.devices * t.num_nodes
        require(t.global_batch_size == per_step, "trainer.global_batch_size", t.global_batch_size,
                f"stage=rlhf updates once per rollout batch, without accumulation: set it to micro_batch_size x "
                f"devices x num_nodes = {per_step} (micro_batch_size is prompts per rollout)")
        seq = t.seq_len or cfg.model.max_seq_len
        require(s.max_new_tokens < seq, "stage.max_new_tokens", s.max_new_tokens,
                f"must leave room for the prompt in trainer.seq_len={seq}")


def _check_rlhf_sources(cfg: Config, planned: PlannedRuns) -> None:
    """Rewards scored by another model: that run exists and reads the policy's tokens."""
    for kind, key, path in reward_sources(cfg.stage):
        require(path is not None and is_model_source(path, planned), key, path,
                f"reward={kind} needs an llmexp run folder or checkpoint")
        other = saved_config(path, planned)
        if other is None:
            continue
        if kind == "model":
            require(other["stage"]["name"] == "reward", key, path,
                    f"is a stage={other['stage']['name']} run: needs a stage=reward run")
        mine = {k: getattr(cfg.tokenizer, k) for k in ("kind", "name", "vocab_size", "special_tokens")}
        theirs = {k: other["tokenizer"].get(k) for k in mine}
        require(mine == theirs, key, path,
                f"its tokenizer {theirs} differs from the policy's {mine}: scores would read other tokens")
