"""Derive pass: a validated Config -> a Plan of pure numbers. No torch, no Lightning.

Conventions (documented in the README, "The plan"):
- params_total counts every weight once (tied embeddings once), as Chinchilla counts N.
- flops_per_token = 6 * N_matmul + 12 * n_layers * d_model * seq_len (PaLM, Chowdhery et al.
  2022, appendix B), where N_matmul is every weight used in a matmul: the non-embedding
  weights plus the output projection (the input embedding is a lookup, not a matmul).
- memory is per device, for the parallelism's sharding (single/ddp: a full replica), with
  AdamW's two fp32 moments, and activations of a flash-attention Llama block.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import List, Optional

from llmexp.accelerators import ACCELERATORS, Accelerator, cpu
from llmexp.config.errors import ConfigError
from llmexp.config.schema import Config, ModelConfig
from llmexp.layout import Layout, explicit_layout, stage_bounds, stages_of_rank, world_size

GiB = 1024**3


@dataclass(frozen=True)
class ParamCount:
    total: int
    embedding: int  # the input embedding table
    output: int  # the output projection (0 extra when tied to the embedding)
    non_embedding: int  # blocks and final norm
    matmul: int  # weights used in a matmul per token: blocks plus the output projection


def head_dim_of(model: ModelConfig) -> int:
    return model.head_dim or model.d_model // model.n_heads


def attention_dims(model: ModelConfig) -> tuple[int, int]:
    """(query width n_heads x head_dim, key/value width n_kv_heads x head_dim)."""
    head_dim = head_dim_of(model)
    return model.n_heads * head_dim, (model.n_kv_heads or model.n_heads) * head_dim


def count_params(model: ModelConfig, vocab_size: int) -> ParamCount:
    d, L = model.d_model, model.n_layers
    q_dim, kv_dim = attention_dims(model)
    attention = d * q_dim + 2 * d * kv_dim + q_dim * d  # wq, wk, wv, wo
    attention += {"none": 0, "qkv": q_dim + 2 * kv_dim, "all": q_dim + 2 * kv_dim + d}[model.attention_bias]
    mlp = 3 * d * model.ffn_dim  # SwiGLU: gate, up, down
    norms = 2 * d + (2 * head_dim_of(model) if model.qk_norm else 0)
    non_embedding = L * (attention + mlp + norms) + d  # + final norm
    embedding = vocab_size * d
    output = 0 if model.tie_embeddings else vocab_size * d
    return ParamCount(
        total=non_embedding + embedding + output,
        embedding=embedding,
        output=output,
        non_embedding=non_embedding,
        matmul=non_embedding + vocab_size * d,
    )


def lora_params(model: ModelConfig, targets: List[str], rank: int) -> int:
    """LoRA adds A (rank x in) and B (out x rank) to each targeted matrix of every block."""
    d, (q, kv) = model.d_model, attention_dims(model)
    shapes = {"wq": (d, q), "wk": (d, kv), "wv": (d, kv), "wo": (q, d),
              "w1": (d, model.ffn_dim), "w3": (d, model.ffn_dim), "w2": (model.ffn_dim, d)}
    return model.n_layers * sum(rank * sum(shapes[t]) for t in targets)


def trainable_params(cfg: Config, params: ParamCount) -> int:
    """Parameters the optimizer updates: the network (or its LoRA adapters) plus the stage's
    scalar heads (reward: one; PPO: the value model, a full copy of the network + head)."""
    stage, d = cfg.stage, cfg.model.d_model
    lora = getattr(stage, "lora", None)
    network = lora_params(cfg.model, list(lora.targets), lora.rank) if lora is not None and lora.enabled else params.total
    if stage.name == "reward":
        return network + d + 1
    if stage.name == "rlhf" and stage.algorithm == "ppo":
        return network + params.total + d + 1
    return network


def flops_per_token(model: ModelConfig, params: ParamCount, seq_len: int) -> int:
    """Training FLOPs per token: forward + backward, with PaLM's attention term (over the
    query width, and over at most the sliding window's keys)."""
    keys = min(seq_len, model.sliding_window or seq_len)
    return 6 * params.matmul + 12 * model.n_layers * attention_dims(model)[0] * keys


@dataclass
class Memory:
    """Bytes per device."""

    weights: float
    gradients: float
    optimizer: float
    activations: float  # without activation checkpointing
    activations_checkpointed: float  # full: block inputs kept, one block recomputed at a time; selective: matmul outputs kept
    activation_checkpointing: bool
    gathered: float = 0.0  # fsdp: transient all-gathered weights and unsharded gradients of the blocks in flight
    accumulated_gradients: float = 0.0  # fsdp: unsharded gradients kept between micro-batches (reduced on the last only)

    @property
    def total(self) -> float:
        acts = self.activations_checkpointed if self.activation_checkpointing else self.activations
        return self.weights + self.gradients + self.optimizer + acts + self.gathered + self.accumulated_gradients


# fp32 values of optimizer state per parameter. Adafactor keeps one row and one column vector
# per matrix (factored second moment): negligible next to N, counted as 0.
OPTIMIZER_STATES = {"adamw": lambda o: 2, "sgd": lambda o: 1 if o.momentum else 0, "adafactor": lambda o: 0}
OPTIMIZER_STATE_TEXT = {"adamw": "AdamW, 2 fp32 moments", "sgd": "SGD, 1 fp32 momentum buffer",
                        "adafactor": "Adafactor, factored second moment"}


@dataclass
class PipelinePlan:
    """Pipeline parallelism (pp, fsdp_pp, fsdp_tp_pp): how the blocks are cut and what the schedule costs."""

    schedule: str  # gpipe | 1f1b | interleaved_1f1b
    ranks: int  # pipeline degree p
    stages_per_rank: int  # v (interleaved_1f1b: >= 2)
    layers_per_stage: List[int]
    microbatches: int  # m: the micro-batches of one optimizer step on one data-parallel rank
    bubble: float  # idle share of a step: (p-1)/(m+p-1); interleaved (p-1)/(v*m+p-1)
    in_flight: int  # micro-batch passes of a stage whose activations the busiest rank holds at once


@dataclass
class Plan:
    model: str
    stage: str
    vocab_size: int
    params_total: int
    params_non_embedding: int
    params_embedding: int
    flops_per_token: int
    flops_per_token_6n: int
    seq_len: int
    micro_batch_size: int
    global_batch_size: int
    grad_accumulation: int
    world_size: int
    tokens_per_step: int
    steps: int
    tokens: int
    budget_source: str
    total_flops: float
    precision: str
    strategy: str
    memory: Memory
    accelerator: str  # the device the run is planned on: plan.accelerator, or "cpu" for trainer.accelerator=cpu
    device_memory: float  # bytes per device: the accelerator's memory, or the CPU's RAM / processes
    mfu: float
    estimated_seconds: float
    layout_reason: str = ""  # parallelism=auto: why this layout, checkpointing and micro-batch
    reduce_every_microbatch: bool = False  # fsdp with accumulation: True when unsharded gradients would not fit
    warnings: List[str] = field(default_factory=list)
    optimizer: str = OPTIMIZER_STATE_TEXT["adamw"]  # what the optimizer memory holds
    on_cpu: bool = False  # trainer.accelerator=cpu: the estimate (priced on `accelerator`) is not this run's
    params_trainable: Optional[int] = None  # what the optimizer updates (LoRA adapters, heads); None: all
    float8_share: float = 0.0  # parallelism.float8: share of the FLOPs run as fp8 matmuls (timed at the fp8 peak)
    pipeline: Optional[PipelinePlan] = None  # pp, fsdp_pp, fsdp_tp_pp

    @property
    def loader_batches_per_step(self) -> int:
        """Batches the training loader yields per optimizer step: the micro-batches, or one under
        pipeline parallelism (the schedule splits it into its micro-batches)."""
        return 1 if self.pipeline else self.grad_accumulation

    @property
    def loader_batch_size(self) -> int:
        return self.micro_batch_size * self.grad_accumulation // self.loader_batches_per_step

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params_total

    def to_dict(self) -> dict:
        out = asdict(self)
        out["memory"]["total"] = self.memory.total
        out["tokens_per_param"] = self.tokens_per_param
        out["estimated_accelerator_hours"] = self.estimated_seconds * self.world_size / 3600
        return out


def vocab_size_of(cfg: Config) -> int:
    return cfg.model.vocab_size or cfg.tokenizer.vocab_size


def seq_len_of(cfg: Config) -> int:
    return cfg.trainer.seq_len or cfg.model.max_seq_len


def derive(cfg: Config) -> Plan:
    """The plan of `cfg`; for parallelism=auto, of the layout, checkpointing and micro-batch the
    planner chooses (the run builds the same: run.py applies resolve_auto)."""
    reason = choose_layout(cfg).reason if cfg.parallelism.strategy == "auto" else ""
    cfg = resolve_auto(cfg)
    m, t, p = cfg.model, cfg.trainer, cfg.plan
    vocab = vocab_size_of(cfg)
    seq = seq_len_of(cfg)
    params = count_params(m, vocab)
    world = t.devices * t.num_nodes
    layout = layout_of(cfg)
    accumulation = t.global_batch_size // (t.micro_batch_size * layout.dp)  # TP ranks share a batch
    tokens_per_step = t.global_batch_size * seq

    limits = []  # (steps, source); the first limit reached ends the run
    if t.max_steps is not None:
        limits.append((t.max_steps, f"trainer.max_steps={t.max_steps:,}"))
    if t.max_tokens is not None:
        limits.append((math.ceil(t.max_tokens / tokens_per_step), f"trainer.max_tokens={t.max_tokens:,}"))
    if limits:
        steps, source = min(limits)
    elif p.name == "chinchilla":
        target = p.tokens_per_param * params.total
        steps = math.ceil(target / tokens_per_step)
        source = f"plan=chinchilla: {p.tokens_per_param:g} tokens/param x {params.total:,} params"
    else:  # validation guarantees a budget for every other plan
        raise ConfigError("plan.name", p.name, "needs trainer.max_steps or trainer.max_tokens")
    steps = max(steps, 1)
    tokens = steps * tokens_per_step

    fpt = flops_per_token(m, params, seq)
    total_flops = float(fpt) * tokens
    accelerator = device_of(cfg)
    pipeline = pipeline_plan(cfg, layout, accumulation)
    # The pipeline bubble idles every device for its share of the step.
    seconds = total_flops / (world * accelerator.peak_bf16_flops * p.mfu) / (1 - (pipeline.bubble if pipeline else 0))
    share = float8_flops(m, seq) / fpt if cfg.parallelism.float8 else 0.0
    if share:  # the converted matmuls at the fp8 rate, the rest at bf16's: an upper bound on the speed-up
        seconds *= (1 - share) + share * accelerator.peak_bf16_flops / accelerator.peak_fp8_flops
    memory = estimate_memory(cfg, params, seq, layout)
    capacity = per_device_capacity(cfg, accelerator)
    # FSDP with accumulation: reduce-scatter gradients only after the last micro-batch (one
    # collective per step instead of one per micro-batch), which keeps every block's unsharded
    # gradient until then (FSDP2 accumulates them in the reduce dtype); where that does not fit,
    # reduce every micro-batch, as ZeRO-3 does.
    reduce_every_microbatch = False
    if layout.strategy in ("fsdp", "fsdp_tp", "hsdp") and layout.dp > 1 and accumulation > 1:
        kept = params.total / layout.tp * (2 if cfg.parallelism.precision == "bf16-true" else 4)  # this TP rank's
        if memory.total + kept <= FIT * capacity:
            memory.accumulated_gradients = kept
        else:
            reduce_every_microbatch = True
    if layout.strategy in ("fsdp_pp", "fsdp_tp_pp") and layout.shard > 1:  # torch's schedules reduce after the last micro-batch only
        memory.accumulated_gradients = memory.weights * layout.shard

    warnings = []
    if memory.total > FIT * capacity:
        warnings.append(
            f"needs {memory.total / GiB:.1f} GiB per device but {accelerator.name} has {capacity / GiB:.1f} GiB "
            f"({FIT:.0%} usable): {_fit_advice(cfg)}"
        )
    if cfg.optimizer.warmup_steps >= steps:
        warnings.append(
            f"optimizer.warmup_steps={cfg.optimizer.warmup_steps} >= {steps} steps: "
            "the learning rate never reaches its peak"
        )
    return Plan(
        model=m.name,
        stage=cfg.stage.name,
        vocab_size=vocab,
        params_total=params.total,
        params_non_embedding=params.non_embedding,
        params_embedding=params.embedding,
        flops_per_token=fpt,
        flops_per_token_6n=6 * params.total,
        seq_len=seq,
        micro_batch_size=t.micro_batch_size,
        global_batch_size=t.global_batch_size,
        grad_accumulation=accumulation,
        world_size=world,
        tokens_per_step=tokens_per_step,
        steps=steps,
        tokens=tokens,
        budget_source=source,
        total_flops=total_flops,
        precision=cfg.parallelism.precision,
        strategy=layout.describe(),
        memory=memory,
        accelerator=accelerator.name,
        device_memory=capacity,
        mfu=p.mfu,
        estimated_seconds=seconds,
        layout_reason=reason,
        reduce_every_microbatch=reduce_every_microbatch,
        warnings=warnings,
        optimizer=OPTIMIZER_STATE_TEXT[cfg.optimizer.name],
        on_cpu=t.accelerator == "cpu",
        params_trainable=trainable_params(cfg, params),
        float8_share=share,
        pipeline=pipeline,
    )


def pipeline_plan(cfg: Config, layout: Layout, microbatches: int) -> Optional[PipelinePlan]:
    """Bubble and activations in flight of the pipeline schedule (Narayanan et al. 2021, Megatron-LM):
    GPipe and 1F1B idle (p-1)/(m+p-1) of a step, interleaved 1F1B with v stages per rank
    (p-1)/(v*m+p-1). GPipe keeps all m micro-batches' activations until the backward; 1F1B at
    most p on the first rank; interleaved its warm-up, (v-1)*p + 2*(p-1) + 1 stage passes (torch's
    ScheduleInterleaved1F1B), i.e. 1 + (p-1)/(v*p) times 1F1B's."""
    if layout.pp == 1:
        return None
    p, pc = layout.pp, cfg.parallelism
    v = pc.pp_stages_per_rank
    bounds = stage_bounds(cfg.model.n_layers, p * v, pc.pp_split_points)
    if pc.pp_schedule == "gpipe":
        in_flight, bubble = microbatches * v, (p - 1) / (microbatches + p - 1)
    elif pc.pp_schedule == "1f1b":
        in_flight, bubble = min(p, microbatches), (p - 1) / (microbatches + p - 1)
    else:
        in_flight, bubble = min((v - 1) * p + 2 * (p - 1) + 1, v * microbatches), (p - 1) / (v * microbatches + p - 1)
    return PipelinePlan(pc.pp_schedule, p, v, [end - start for start, end in bounds], microbatches, bubble, in_flight)


def float8_flops(model: ModelConfig, seq_len: int) -> int:
    """Training FLOPs per token of the matmuls parallelism.float8 converts: the blocks' linear
    layers whose both dims are multiples of 16 (torchao's fp8 GEMMs need it); the output
    projection and attention's own matmuls stay bf16, as in torchtitan."""
    d, (q, kv) = model.d_model, attention_dims(model)
    shapes = [(d, q), (d, kv), (d, kv), (q, d), (d, model.ffn_dim), (d, model.ffn_dim), (model.ffn_dim, d)]
    return 6 * model.n_layers * sum(i * o for i, o in shapes if i % 16 == 0 and o % 16 == 0)


def estimate_memory(cfg: Config, params: ParamCount, seq_len: int, layout: Optional[Layout] = None) -> Memory:
    """Per-device bytes for the layout (docs/parallelism.md, "Memory model"):
    - single/ddp: a full replica.
    - tp: every matmul weight of the blocks, the embedding and the output projection split by
      tp (norms whole); activations inside attention/MLP split by tp (heads, ffn columns) and,
      with sequence parallelism, the residual stream and norms split along the sequence.
    - fsdp (and the dp dimension of fsdp_tp, deepspeed): weights, gradients and AdamW state
      sharded by dp at rest; `gathered` counts what FSDP all-gathers transiently: the root's
      weights (embedding, output, final norm: never resharded) and two blocks (the one running
      and the one prefetched), plus one block's unsharded gradients; without
      reshard_after_forward every gathered weight stays until backward.
    - hsdp: as fsdp, sharded by the shard degree only (every replica holds a full set of shards).
    - pp / fsdp_pp / fsdp_tp_pp: the busiest pipeline rank (weights of its stages; the activations
      of the stage passes its schedule keeps in flight: pipeline_plan), each stage split by tp as above.
    - cpu_offload: sharded weights, gradients and optimizer state live on the CPU (0 here).
    """
    layout = layout or layout_of(cfg)
    m = cfg.model
    if layout.pp == 1:
        return _memory(cfg, params, seq_len, layout, params.total, m.n_layers, m.n_layers, 1)
    # Pipeline: the busiest rank's blocks (plus the embedding on the first stage, the final norm
    # and output projection on the last) and the stage passes its schedule keeps in flight.
    t, pc = cfg.trainer, cfg.parallelism
    microbatches = t.global_batch_size // (t.micro_batch_size * layout.dp)
    p, v = layout.pp, pc.pp_stages_per_rank
    bounds = stage_bounds(m.n_layers, p * v, pc.pp_split_points)
    per_block = (params.non_embedding - m.d_model) / m.n_layers
    ranks = []
    for r in range(p):
        stages = stages_of_rank(r, p, v)
        layers = [bounds[s][1] - bounds[s][0] for s in stages]
        first, last = 0 in stages, p * v - 1 in stages
        weights = sum(layers) * per_block + (params.embedding if first else 0) + (m.d_model + params.output if last else 0)
        if pc.pp_schedule == "gpipe":
            passes = microbatches * sum(layers)
        elif pc.pp_schedule == "1f1b":
            passes = min(p - r, microbatches) * sum(layers)
        else:  # interleaved: warm-up passes over this rank's stages, each of ~n_layers / (p v) blocks
            passes = min((v - 1) * p + 2 * (p - 1 - r) + 1, v * microbatches) * sum(layers) / v
        heads = (microbatches if pc.pp_schedule == "gpipe" else 1) if last else 0
        ranks.append(_memory(cfg, params, seq_len, layout, weights, sum(layers), passes, heads))
    return max(ranks, key=lambda memory: memory.total)


def _memory(cfg: Config, params: ParamCount, seq_len: int, layout: Layout, weights: float, layers: int,
            layer_passes: float, head_passes: int) -> Memory:
    """One rank holding `weights` parameters in `layers` blocks, with the activations of
    `layer_passes` block passes and `head_passes` output-head passes kept for backward."""
    m, precision = cfg.model, cfg.parallelism.precision
    true_half = precision == "bf16-true"
    weight_bytes = 2 if true_half else 4  # mixed precision keeps fp32 master weights
    act_bytes = 4 if precision == "32" else 2
    tp = layout.tp
    dp_shard = layout.shard  # hsdp: the shard degree only (replicas hold the same shard)
    norms = layers * 2 * m.d_model + m.d_model
    local = (weights - norms) / tp + norms  # this TP rank's share of every weight
    n = local / dp_shard  # ... and its FSDP shard
    block = (params.non_embedding - m.n_layers * 2 * m.d_model - m.d_model) / m.n_layers / tp + 2 * m.d_model
    gathered = 0.0
    if dp_shard > 1:
        compute_bytes = 2 if precision != "32" else weight_bytes  # FSDP2 gathers in param_dtype
        root = local - block * layers
        # torch's pipeline schedules keep a stage unsharded from its first backward to its last
        # (reshard_after_backward off between micro-batches), like reshard_after_forward=false
        kept = not cfg.parallelism.reshard_after_forward or layout.pp > 1
        in_flight = local if kept else root + 2 * block
        gathered = in_flight * compute_bytes + block * weight_bytes
    q_dim, kv_dim = attention_dims(m)
    tokens = cfg.trainer.micro_batch_size * seq_len / layout.cp  # context parallelism: this rank's share of each sequence
    # Bytes saved for backward per token, as eager PyTorch saves them for llmexp's Llama
    # (counted with saved-tensor hooks in tests/parallel/test_memory.py):
    # - each RMSNorm: its fp32 input and normalised output (split along the sequence under TP's
    #   sequence parallelism), and the matmul input it feeds, in compute dtype (whole: TP
    #   gathers the sequence before the column-parallel matmuls);
    # - attention: q and k after RoPE, v and the attention output (2 q + 2 kv: RoPE's products
    #   with the cos/sin tables keep only the tables); MLP: gate, up, silu(gate) and their
    #   product (4 ffn): heads and ffn columns split by tp;
    # - head: the final norm and the fp32 log-softmax of the logits (whole under TP).
    norm_path = 2 * m.d_model * 4 / tp + m.d_model * act_bytes
    per_layer = 2 * norm_path + (2 * q_dim + 2 * kv_dim + 4 * m.ffn_dim) * act_bytes / tp
    vocab = vocab_size_of(cfg)
    head = (norm_path + vocab * 4) * tokens * head_passes
    full = per_layer * layer_passes * tokens + head
    block_input = m.d_model * 4 / tp  # the fp32 residual stream entering a block (seq-split under TP)
    if cfg.parallelism.activation_checkpointing_mode == "selective":
        # Outputs of matmuls and attention kept (q, k, v, attention out, wo, w1, w3, w2);
        # norms, RoPE and SwiGLU's pointwise ops recomputed.
        kept = block_input + (2 * q_dim + m.d_model + 2 * kv_dim + 2 * m.ffn_dim) * act_bytes / tp
        checkpointed = kept * layer_passes * tokens + per_layer * tokens + head
    else:
        checkpointed = block_input * layer_passes * tokens + per_layer * tokens + head
    offload = cfg.parallelism.cpu_offload
    return Memory(
        weights=0.0 if offload else n * weight_bytes,
        gradients=0.0 if offload else n * weight_bytes,
        optimizer=0.0 if offload else n * OPTIMIZER_STATES[cfg.optimizer.name](cfg.optimizer) * weight_bytes,
        activations=full,
        activations_checkpointed=checkpointed,
        activation_checkpointing=cfg.parallelism.activation_checkpointing,
        gathered=gathered,
    )


def _si(x: float, unit: str = "") -> str:
    for scale, suffix in ((1e24, "Y"), (1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {suffix}{unit}"
    return f"{x:.0f} {unit}".rstrip()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_plan(plan: Plan, gib: Optional[float] = None) -> str:
    """The plan for people: what `dry_run=true` prints and every run logs at its start."""
    mem = plan.memory
    ckpt = "on" if mem.activation_checkpointing else "off"
    lines = [
        f"plan: stage={plan.stage} model={plan.model} vocab={plan.vocab_size:,}",
        f"  parameters      {plan.params_total:>20,}  ({_si(plan.params_total)})",
        f"    non-embedding {plan.params_non_embedding:>20,}",
        f"    embedding     {plan.params_embedding:>20,}",
        f"    trainable     {plan.params_trainable if plan.params_trainable is not None else plan.params_total:>20,}",
        f"  FLOPs/token     {plan.flops_per_token:>20,}  (6N = {plan.flops_per_token_6n:,}; + attention at seq {plan.seq_len})",
        f"  batch           {plan.global_batch_size} seqs x {plan.seq_len} = {plan.tokens_per_step:,} tokens/step"
        f"  (micro {plan.micro_batch_size} x {plan.global_batch_size // (plan.micro_batch_size * plan.grad_accumulation)} data-parallel"
        f" x {plan.grad_accumulation} accumulation; {plan.world_size} devices)",
        f"  steps           {plan.steps:>20,}",
        f"  tokens          {plan.tokens:>20,}  ({plan.tokens_per_param:.1f} tokens/param; budget from {plan.budget_source})",
        f"  total FLOPs     {plan.total_flops:>20.3e}",
        f"  memory/device   {mem.total / GiB:>17.2f} GiB  of {plan.device_memory / GiB:.1f} GiB on {plan.accelerator}"
        f"  ({plan.strategy}, precision {plan.precision}, activation checkpointing {ckpt})",
        *([f"    layout        {plan.layout_reason}"] if plan.layout_reason else []),
        *([_pipeline_line(plan.pipeline)] if plan.pipeline else []),
        f"    weights       {mem.weights / GiB:>17.2f} GiB",
        f"    gradients     {mem.gradients / GiB:>17.2f} GiB",
        f"    optimizer     {mem.optimizer / GiB:>17.2f} GiB  ({plan.optimizer})",
        *([f"    fsdp gathered {mem.gathered / GiB:>17.2f} GiB  (blocks all-gathered in flight)"] if mem.gathered else []),
        *([f"    accumulated   {mem.accumulated_gradients / GiB:>17.2f} GiB  (unsharded gradients, reduce-scattered "
           "after the last micro-batch)"] if mem.accumulated_gradients else []),
        *(["    gradients reduce-scattered every micro-batch (unsharded ones would not fit)"]
          if plan.reduce_every_microbatch else []),
        f"    activations   {mem.activations / GiB:>17.2f} GiB  without checkpointing, "
        f"{mem.activations_checkpointed / GiB:.2f} GiB with",
        _time_line(plan),
    ]
    lines += [f"  warning: {w}" for w in plan.warnings]
    return "\n".join(lines)


def _pipeline_line(pp: PipelinePlan) -> str:
    sizes = sorted(set(pp.layers_per_stage))
    blocks = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    return (f"    pipeline      {pp.schedule}, {pp.ranks * pp.stages_per_rank} stages of {blocks} blocks "
            f"(pp {pp.ranks} x {pp.stages_per_rank} per rank), {pp.microbatches} micro-batches: bubble {pp.bubble:.1%} "
            f"(in the time estimate), {pp.in_flight} stage passes in flight on the busiest rank")


def _time_line(plan: Plan) -> str:
    line = (f"  time estimate   {_duration(plan.estimated_seconds):>20}  on {plan.world_size} x {plan.accelerator} at "
            f"{plan.mfu:.0%} MFU")
    if plan.float8_share:
        line += f"  (float8: {plan.float8_share:.0%} of the FLOPs at the fp8 peak, an upper bound)"
    if plan.on_cpu:  # no vendor peak exists for a CPU: llmexp.accelerators.cpu() assumes a nominal one
        return line + "  (rough: a nominal CPU peak)"
    return line + f"  ({plan.estimated_seconds * plan.world_size / 3600:,.0f} {plan.accelerator}-hours)"


FIT = 0.9  # share of a device's memory a plan may use: the rest is the CUDA context, allocator slack, buffers


def device_of(cfg: Config) -> Accelerator:
    """The device the run is planned on: this machine's CPU for trainer.accelerator=cpu, else
    plan.accelerator (auto and gpu plan for the GPU the run is meant for, even from a laptop)."""
    return cpu() if cfg.trainer.accelerator == "cpu" else ACCELERATORS[cfg.plan.accelerator]


def per_device_capacity(cfg: Config, device: Accelerator) -> float:
    """Bytes one device may hold: a GPU's memory; on the CPU every process shares the RAM."""
    return device.memory_bytes / world_size(cfg) if device.name == "cpu" else device.memory_bytes


def _fit_advice(cfg: Config) -> str:
    if cfg.parallelism.strategy == "auto":
        return "no layout, checkpointing or micro-batch fits: use more devices or a smaller model"
    return ("use parallelism=auto (it picks a layout, activation checkpointing and micro-batch that fit), "
            "a sharded parallelism, parallelism.activation_checkpointing=true, a smaller trainer.micro_batch_size "
            "or more devices")


@dataclass(frozen=True)
class LayoutChoice:
    """What `parallelism.strategy=auto` runs with: a layout and the two memory knobs."""
    layout: Layout
    checkpointing: str  # off | selective | full
    micro_batch_size: int
    bytes_per_device: float
    fits: bool
    reason: str


# Relative step time of each option, for picking the cheapest layout that fits (rough, from the
# work each adds): full checkpointing recomputes the forward (+1/3 of 6N); selective recomputes
# only pointwise ops; FSDP's gathers overlap compute but cost some; TP's per-block collectives sit
# on the critical path and grow with the degree; each halving of the micro-batch lowers matmul
# efficiency and adds a pass of FSDP gathers.
CHECKPOINTING_COST = {"off": 1.0, "selective": 1.05, "full": 4 / 3}
LAYOUT_COST = {"single": 1.0, "ddp": 1.0, "fsdp": 1.05}
TP_COST_PER_DOUBLING = 0.12
HALVING_COST = 1.08


def _candidate_layouts(cfg: Config) -> List[Layout]:
    world = world_size(cfg)
    if world == 1:
        return [Layout("single", 1, 1)]
    m = cfg.model
    seq = seq_len_of(cfg)
    out = [Layout("ddp", world, 1), Layout("fsdp", world, 1)]
    for tp in (2, 4, 8):  # TP within a node
        if all(n % tp == 0 for n in (cfg.trainer.devices, m.n_heads, m.n_kv_heads or m.n_heads, m.ffn_dim, seq)):
            out.append(Layout("fsdp_tp", world // tp, tp))
    return out


def _cost(layout: Layout, checkpointing: str, halvings: int) -> float:
    base = LAYOUT_COST.get(layout.strategy, 1.0 + TP_COST_PER_DOUBLING * math.log2(max(layout.tp, 1)))
    return base * CHECKPOINTING_COST[checkpointing] * HALVING_COST**halvings


def choose_layout(cfg: Config) -> LayoutChoice:
    """`strategy=auto`: of every layout (ddp, fsdp, fsdp_tp with tp 2/4/8 within a node),
    activation checkpointing (off, selective, full; never below what the config asks) and
    micro-batch (the configured one, halved down to 1; rlhf keeps it: it does not accumulate),
    the cheapest by the costs above whose memory fits FIT of the device; none fits -> the
    smallest, with a warning in the plan."""
    p, t = cfg.parallelism, cfg.trainer
    device = device_of(cfg)
    budget = FIT * per_device_capacity(cfg, device)
    params = count_params(cfg.model, vocab_size_of(cfg))
    seq = seq_len_of(cfg)
    modes = ["off", "selective", "full"]
    if p.activation_checkpointing:  # the user asked for it: a floor, never turned off
        modes = ["selective", "full"] if p.activation_checkpointing_mode == "selective" else ["full"]
    micros = [t.micro_batch_size]
    while cfg.stage.name != "rlhf" and micros[-1] % 2 == 0:
        micros.append(micros[-1] // 2)
    options = []
    for layout in _candidate_layouts(cfg):
        for mode in modes:
            for halvings, micro in enumerate(micros):
                knobs = replace(cfg, trainer=replace(t, micro_batch_size=micro), parallelism=replace(
                    p, activation_checkpointing=mode != "off",
                    activation_checkpointing_mode=p.activation_checkpointing_mode if mode == "off" else mode))
                total = estimate_memory(knobs, params, seq, layout).total
                options.append((_cost(layout, mode, halvings), total, layout, mode, micro))
    fitting = [o for o in options if o[1] <= budget]
    cost, total, layout, mode, micro = min(fitting, key=lambda o: o[:2]) if fitting else min(options, key=lambda o: o[1])
    def describe(layout: Layout, mode: str, micro: int) -> str:
        return f"{layout.describe()}, activation checkpointing {mode}, micro-batch {micro}"

    _, cheapest_total, *cheapest = min(options, key=lambda o: o[:2])
    if not fitting:
        reason = f"{describe(layout, mode, micro)}: the smallest option ({total / GiB:.1f} GiB) and still over {budget / GiB:.1f} GiB"
    elif cheapest_total <= budget:
        reason = f"{describe(layout, mode, micro)}: the cheapest option, {total / GiB:.1f} GiB of {budget / GiB:.1f} GiB usable on {device.name}"
    else:
        reason = (f"{describe(layout, mode, micro)}: the cheapest that fits {budget / GiB:.1f} GiB usable on {device.name} "
                  f"({total / GiB:.1f} GiB; {describe(*cheapest)} would need {cheapest_total / GiB:.1f} GiB)")
    return LayoutChoice(layout, mode, micro, total, bool(fitting), reason)


def resolve_auto(cfg: Config) -> Config:
    """`strategy=auto` with the planner's knobs written into the config (activation
    checkpointing and micro-batch), so the run builds what the plan sized. Idempotent (the
    chosen option stays the cheapest fitting one once its knobs are the config's floor), so
    layout_of gives the same layout before and after."""
    if cfg.parallelism.strategy != "auto":
        return cfg
    choice = choose_layout(cfg)
    p = cfg.parallelism
    on = choice.checkpointing != "off"
    return replace(
        cfg,
        trainer=replace(cfg.trainer, micro_batch_size=choice.micro_batch_size),
        parallelism=replace(p, activation_checkpointing=on,
                            activation_checkpointing_mode=choice.checkpointing if on else p.activation_checkpointing_mode),
    )


def layout_of(cfg: Config) -> Layout:
    """The run's layout: the named strategy's, or the planner's choice for `strategy=auto`."""
    return choose_layout(cfg).layout if cfg.parallelism.strategy == "auto" else explicit_layout(cfg)
