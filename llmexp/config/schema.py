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
    # Options of today's open families (docs/models.md); defaults are plain Llama-2.
    family: str = "llama"  # llama | mistral | qwen2 | qwen3: the transformers architecture an export writes
    head_dim: Optional[int] = None  # None: d_model // n_heads (Qwen3 decouples it)
    attention_bias: str = "none"  # none | qkv (Qwen2) | all (q, k, v and o: Llama/Qwen3 attention_bias)
    qk_norm: bool = False  # RMSNorm over each head's queries and keys before RoPE (Qwen3)
    sliding_window: Optional[int] = None  # each token attends to the last this-many positions (Mistral v0.1)
    rope_scaling: str = "none"  # none | linear | llama3 (Llama-3.1+) | yarn
    rope_factor: float = 1.0  # context extension factor of the scaling
    rope_original_max_seq_len: Optional[int] = None  # llama3, yarn: the pre-training context length
    rope_low_freq_factor: float = 1.0  # llama3
    rope_high_freq_factor: float = 4.0  # llama3
    rope_beta_fast: float = 32.0  # yarn
    rope_beta_slow: float = 1.0  # yarn
    rope_attention_factor: Optional[float] = None  # yarn: cos/sin scale (None: 0.1 ln(factor) + 1)


@dataclass
class TokenizerConfig:
    """`kind=bpe` trains a byte-level BPE on the data (cached by content hash);
    `kind=tiktoken` loads one of tiktoken's named encodings; `kind=hf` converts a transformers
    folder's tokenizer (set by init_from=<transformers folder>)."""

    kind: str = "bpe"  # bpe | tiktoken | hf
    name: str = "bpe"  # kind=tiktoken: gpt2, cl100k_base, o200k_base; kind=hf: the folder
    vocab_size: int = 4096  # total, special tokens included
    special_tokens: List[str] = field(
        default_factory=lambda: ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
    )
    train_max_bytes: int = 50_000_000  # BPE training reads at most this much of the data
    cache_dir: Optional[str] = None  # None: $LLMEXP_CACHE or ~/.cache/llmexp


@dataclass
class CleanConfig:
    """Cleaning steps of one source, applied in this order; each is reported (documents and
    bytes in/out). Defaults do nothing but drop empty documents."""

    strip_html: bool = False  # tags, scripts and styles removed, entities unescaped
    unicode_normalize: Optional[str] = None  # NFC | NFKC | NFD | NFKD
    mask_emails: bool = False  # -> <EMAIL>
    mask_ips: bool = False  # IPv4 addresses -> <IP>
    min_chars: int = 1
    max_chars: Optional[int] = None
    min_words: int = 0
    max_symbol_ratio: Optional[float] = None  # share of characters that are neither letters, digits nor spaces
    max_repeated_line_fraction: Optional[float] = None  # share of non-empty lines repeating an earlier line
    exact_dedup: bool = False  # drop documents whose text was already seen (whitespace-normalized)
    near_dedup: bool = False  # MinHash/LSH (datasketch): drop documents similar to one already kept
    near_dedup_threshold: float = 0.8  # estimated Jaccard similarity of word n-gram sets
    near_dedup_num_perm: int = 128
    near_dedup_ngram: int = 5


@dataclass
class SourceConfig:
    """One source of a data mix. kind: embedded | text | jsonl | parquet | hf."""

    kind: str = "embedded"
    name: Optional[str] = None  # in logs and metrics (data/tokens_<name>); None: the kind
    weight: float = 1.0  # share of training tokens drawn from this source (normalised over the mix)
    path: Optional[str] = None  # file, folder or glob (text, jsonl, parquet); hf: data files or a save_to_disk folder
    text_field: str = "text"  # jsonl, parquet, hf: the field holding the document
    template: Optional[str] = None  # instead of text_field: e.g. "{title}\n\n{body}" over several fields
    dataset: Optional[str] = None  # hf: hub name (online) or a builder for local files (json, parquet, csv, text)
    subset: Optional[str] = None  # hf: the dataset's configuration name
    split: str = "train"  # hf: which split to read
    revision: Optional[str] = None  # hf: hub revision (part of the cache key)
    streaming: bool = False  # hf hub: stream instead of downloading the whole dataset first
    clean: CleanConfig = field(default_factory=CleanConfig)


@dataclass
class DataConfig:
    name: str = MISSING
    sources: List[SourceConfig] = field(default_factory=list)
    val_fraction: float = 0.05  # fraction of documents held out for validation, per source
    split_seed: int = 1234
    on_exhausted: str = "repeat"  # a source runs out of windows: repeat (another epoch, with a warning) | stop
    shard_bytes: int = 32_000_000  # text bytes per shard (one tokenization task each)
    num_proc: int = 2  # tokenization processes
    verify_checksums: bool = False  # sha256 of every shard at load (sizes are always checked)
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
    """How the model is laid out over devices (docs/parallelism.md). Applied from outside the
    model by llmexp/parallel/; the layout (dp x tp = devices x nodes) by llmexp/layout.py."""

    name: str = "auto"
    strategy: str = "auto"  # auto | single | ddp | fsdp | tp | fsdp_tp | deepspeed
    precision: str = "32"  # 32 | bf16-mixed | 16-mixed | bf16-true
    activation_checkpointing: bool = False
    activation_checkpointing_mode: str = "full"  # full: whole blocks recomputed | selective: matmul/attention outputs kept
    compile: bool = False  # torch.compile per block
    tensor_parallel_size: Optional[int] = None  # fsdp_tp: TP degree (None: trainer.devices, TP within a node)
    reshard_after_forward: bool = True  # fsdp: free gathered weights after forward (ZeRO-3); false: ZeRO-2-like
    cpu_offload: bool = False  # fsdp: parameters, gradients and optimizer state live on the CPU
    distributed_checkpoint: bool = True  # fsdp/tp: checkpoints are DCP folders of per-rank shards
    meta_init: Optional[bool] = None  # fsdp/tp: build on the meta device, initialise shards only (None: from 1B params)
    deepspeed_stage: int = 3  # deepspeed: ZeRO stage 2 or 3


@dataclass
class StageConfig:
    """Keys every stage has. Each stage extends it with its own dataclass, registered in
    STAGE_SCHEMAS; its conf/stage/<name>.yaml starts from `/schema/stage@_here_: <name>`."""

    name: str = MISSING


@dataclass
class PretrainStageConfig(StageConfig):
    name: str = "pretrain"


@dataclass
class LoraConfig:
    """LoRA adapters (peft) on the named nn.Linear modules of every block; the base stays frozen."""

    enabled: bool = False
    rank: int = 8
    alpha: float = 16.0  # adapter output scaled by alpha / rank
    dropout: float = 0.0
    targets: List[str] = field(default_factory=lambda: ["wq", "wk", "wv", "wo"])  # of wq wk wv wo w1 w2 w3
    quantize: Optional[str] = None  # null | nf4 (QLoRA: 4-bit frozen base; bitsandbytes on a GPU)


@dataclass
class PostTrainStageConfig(StageConfig):
    """Keys every post-training stage shares: the dataset, its chat rendering, LoRA.
    The model and tokenizer come from init_from (required)."""

    dataset: str = MISSING  # a JSONL file, folder or glob; hf:<name>; or synthetic:<task> (llmexp/stages/tasks.py)
    hf_split: str = "train"  # for hf:<name>
    val_fraction: float = 0.1  # records held out for validation
    split_seed: int = 1234
    # model: the model's own Jinja template (a transformers tokenizer's), else chatml when the tokenizer
    # reserves its tokens, else plain | chatml | plain | a path to a .jinja file
    chat_template: str = "model"
    truncation: str = "error"  # error | left | right | drop: a record longer than trainer.seq_len
    messages_field: str = "messages"  # [{role, content}, ...]; else prompt_field (+ response)
    prompt_field: str = "prompt"
    synthetic_records: int = 2000  # records generated for synthetic:<task>
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class SFTStageConfig(PostTrainStageConfig):
    name: str = "sft"
    response_field: str = "response"
    loss_on: str = "assistant"  # assistant | all
    packing: bool = True  # several records per sequence, attention kept within each


@dataclass
class RewardStageConfig(PostTrainStageConfig):
    name: str = "reward"
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"


@dataclass
class DPOStageConfig(PostTrainStageConfig):
    name: str = "dpo"
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"
    beta: float = 0.1
    loss: str = "sigmoid"  # sigmoid (DPO) | ipo
    reference: str = "model"  # model: frozen copy of init_from | precomputed: log-probs in the records
    ref_chosen_field: str = "ref_chosen_logp"  # reference=precomputed
    ref_rejected_field: str = "ref_rejected_logp"


@dataclass
class RLHFStageConfig(PostTrainStageConfig):
    name: str = "rlhf"
    algorithm: str = "ppo"  # ppo | grpo
    reward: str = "callable"  # callable | model | judge
    reward_fn: Optional[str] = None  # reward=callable: "package.module:function" (prompt, response) -> float
    reward_model: Optional[str] = None  # reward=model: a stage=reward run folder or checkpoint
    judge_model: Optional[str] = None  # reward=judge: a language-model run folder (RLAIF)
    judge_template: str = "{prompt}\n{response}\nIs this answer correct? Answer yes or no:"
    kl_coef: float = 0.05  # penalty on log pi/pi_ref (PPO: in the reward; GRPO: in the loss)
    group_size: int = 4  # samples per prompt (GRPO's group; PPO samples this many too)
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: Optional[int] = None
    ppo_epochs: int = 2  # optimizer steps on each rollout batch
    clip: float = 0.2
    value_clip: float = 0.2
    vf_coef: float = 0.5
    gamma: float = 1.0
    gae_lambda: float = 0.95
    val_prompts: int = 32  # held-out prompts, group_size samples each, scored at each validation


STAGE_SCHEMAS: dict[str, type] = {
    "pretrain": PretrainStageConfig, "sft": SFTStageConfig, "reward": RewardStageConfig,
    "dpo": DPOStageConfig, "rlhf": RLHFStageConfig,
}


@dataclass
class EvalStageConfig(StageConfig):
    """Evaluate `init_from` (llmexp checkpoint/run folder or transformers folder) on the eval
    group's tasks and intrinsic text (llmexp/eval/); nothing is trained."""

    name: str = "eval"


STAGE_SCHEMAS["eval"] = EvalStageConfig


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
class EvalConfig:
    """lm-eval benchmarks (llmexp/eval/, docs/eval.md): at `stage=eval`, and every
    `every_n_steps` during training when set. Tasks are lm-eval task, group or tag names;
    llmexp's offline ones are llmexp_smoke_{mc,ppl,gen} (tag llmexp_smoke)."""

    name: str = "none"  # none | smoke | standard | your own conf/eval/<name>.yaml
    tasks: List[str] = field(default_factory=list)
    num_fewshot: Optional[int] = None  # None: each task's own default
    limit: Optional[float] = None  # per task: a count (>= 1) or a fraction (< 1) of its documents
    batch_size: int = 8
    dtype: str = "float32"  # float32 | bfloat16 | float16: stage=eval scores in this, whatever the training precision
    max_gen_toks: int = 256  # generate_until's default when a task gives none
    every_n_steps: Optional[int] = None  # in-training evaluation interval (optimizer steps)
    intrinsic_text: Optional[str] = None  # stage=eval: "val" (the data group's held-out split) or a .txt/.jsonl file
    log_samples: bool = False
    seed: int = 1234


@dataclass
class PipelineStep:
    name: str = MISSING  # the step's name: its run folder is <pipeline run_dir>/<index>-<name>
    overrides: List[str] = field(default_factory=list)  # Hydra overrides for this step (stage=..., ...)


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
    eval: EvalConfig = field(default_factory=EvalConfig)
    name: Optional[str] = None  # None: "<stage>-<model>"
    out_dir: str = "runs"  # runs go to <out_dir>/<name>-<config hash> unless run_dir is set
    run_dir: Optional[str] = None
    resume: Optional[str] = None  # a checkpoint or run folder; a run folder resumes by itself
    init_from: Optional[str] = None  # weights to start from: an llmexp checkpoint or run folder, or a transformers folder
    # experiment/ chains (llmexp/pipeline.py): each step's overrides, run in order, each step
    # starting from the previous step's run folder; empty: a single run.
    pipeline: List[PipelineStep] = field(default_factory=list)
    dry_run: Any = False  # false | true | json
