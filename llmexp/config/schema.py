"""Typed schema: every key llmexp understands, its type and its default.

The YAML under conf/ supplies values; these dataclasses decide what is a key at all.
`validate.py` merges the composed config onto them, so an unknown key or a wrong type fails
there with the key's full name. Cross-field rules live in `rules.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING


@dataclass
class ModelConfig:
    """A Llama-style decoder. Presets under conf/model/ use published shapes."""

    name: str = MISSING
    n_layers: int = MISSING
    d_model: int = MISSING
    n_heads: int = MISSING
    n_kv_heads: Optional[int] = None  # None: multi-head attention (n_kv_heads = n_heads)
    ffn_dim: int = MISSING  # hidden width of the SwiGLU MLP
    max_seq_len: int = MISSING  # context length the preset was designed for
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    vocab_size: Optional[int] = None  # None: taken from the tokenizer
    init_std: float = 0.02


@dataclass
class TokenizerConfig:
    """`kind=bpe` trains a byte-level BPE on the data (cached by content hash);
    `kind=tiktoken` loads one of tiktoken's named encodings."""

    kind: str = "bpe"  # bpe | tiktoken
    name: str = "bpe"  # encoding name for kind=tiktoken (gpt2, cl100k_base, o200k_base)
    vocab_size: int = 4096  # total, special tokens included
    special_tokens: List[str] = field(
        default_factory=lambda: ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
    )
    train_max_bytes: int = 50_000_000  # BPE training reads at most this much of the data
    cache_dir: Optional[str] = None  # None: $LLMEXP_CACHE or ~/.cache/llmexp


@dataclass
class SourceConfig:
    """One data source. kind: embedded | text | jsonl."""

    kind: str = "embedded"
    path: Optional[str] = None  # file, folder or glob (text, jsonl)
    text_field: str = "text"  # jsonl: the field holding the document


@dataclass
class DataConfig:
    name: str = MISSING
    sources: List[SourceConfig] = field(default_factory=list)
    val_fraction: float = 0.05  # fraction of documents held out for validation
    split_seed: int = 1234
    cache_dir: Optional[str] = None  # None: $LLMEXP_CACHE or ~/.cache/llmexp


@dataclass
class OptimizerConfig:
    name: str = "adamw"
    lr: float = 3e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1  # applied to matrices only: never to norms, biases, embeddings
    fused: Optional[bool] = None  # None: fused kernels where the device supports them
    grad_clip: Optional[float] = 1.0
    schedule: str = "cosine"  # cosine | linear | constant | wsd
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # final lr as a fraction of lr (cosine, linear, wsd)
    decay_fraction: float = 0.2  # wsd: fraction of the steps spent decaying


@dataclass
class ParallelismConfig:
    name: str = "auto"
    strategy: str = "auto"  # auto | single | ddp
    precision: str = "32"  # 32 | bf16-mixed | 16-mixed | bf16-true
    activation_checkpointing: bool = False
    compile: bool = False


@dataclass
class StageConfig:
    """Keys every stage has. Each stage extends it with its own dataclass, registered in
    STAGE_SCHEMAS; its conf/stage/<name>.yaml starts from `/schema/stage@_here_: <name>`."""

    name: str = MISSING


@dataclass
class PretrainStageConfig(StageConfig):
    name: str = "pretrain"


STAGE_SCHEMAS: dict[str, type] = {"pretrain": PretrainStageConfig}


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: int = 1
    num_nodes: int = 1
    max_steps: Optional[int] = None  # both set: whichever is reached first (as in Lightning);
    max_tokens: Optional[int] = None  # neither: the plan group decides the budget
    seq_len: Optional[int] = None  # None: the model's max_seq_len
    micro_batch_size: int = 8  # sequences per device per forward pass
    global_batch_size: int = 8  # sequences per optimizer step, all devices together
    log_every: int = 10
    val_every: int = 100  # optimizer steps between validations
    val_batches: int = 20
    checkpoint_every: int = 100  # optimizer steps between checkpoints of last.ckpt
    num_workers: int = 0
    seed: int = 1234


@dataclass
class LoggerConfig:
    """Metrics always go to <run_dir>/metrics.csv; `name` adds a tracker."""

    name: str = "csv"  # csv | wandb | tensorboard
    project: str = "llmexp"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class PlanConfig:
    """How the budget is chosen when the trainer gives none, and what the estimate assumes."""

    name: str = "chinchilla"  # chinchilla | explicit
    tokens_per_param: float = 20.0
    accelerator: str = "h100"  # for the time estimate; see llmexp/accelerators.py
    mfu: float = 0.4


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    parallelism: ParallelismConfig = field(default_factory=ParallelismConfig)
    stage: Any = MISSING  # a StageConfig subclass, chosen by the stage group (STAGE_SCHEMAS)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    name: Optional[str] = None  # None: "<stage>-<model>"
    out_dir: str = "runs"  # runs go to <out_dir>/<name>-<config hash> unless run_dir is set
    run_dir: Optional[str] = None
    resume: Optional[str] = None  # a checkpoint or run folder; a run folder resumes by itself
    init_from: Optional[str] = None  # weights to start from: an llmexp checkpoint or run folder
    dry_run: Any = False  # false | true | json
