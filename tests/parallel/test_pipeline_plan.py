"""Pipeline parallelism and HSDP in the validate and derive passes (no torch): stages the
blocks cannot be cut into, too few micro-batches, tied embeddings and the like fail with one
line; the plan's bubble, memory per stage and activations per schedule follow the formulas."""
from __future__ import annotations

from dataclasses import replace

import pytest

import llmexp
from llmexp.config.errors import ConfigError
from llmexp.config.groups.stage import SFTStageConfig
from llmexp.config.rules import check_rules
from llmexp.plan import GiB, layout_of

CPU = ["trainer.accelerator=cpu", "parallelism.precision=32", "model.tie_embeddings=false"]
# tiny: 4 layers; recipe micro 16, global 16
PP2 = ["parallelism=pp", "trainer.devices=2", "trainer.micro_batch_size=4"]
TPP = ["parallelism=fsdp_tp_pp", "trainer.devices=8", "trainer.micro_batch_size=4"]  # tiny: 8 heads, 4 KV heads


def _error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        llmexp.compose([*CPU, *overrides])
    return str(err.value)


@pytest.mark.parametrize("overrides, expected", [
    (["parallelism=pp", "trainer.devices=3", "trainer.micro_batch_size=4", "trainer.global_batch_size=12"],
     "model.n_layers=4: must divide into 3 equal pipeline stages (pp 3 x 1 per rank): or set parallelism.pp_split_points"),
    ([*PP2, "trainer.micro_batch_size=16"],
     "trainer.global_batch_size=16: gives 1 micro-batches per step (global / (micro_batch_size 16 x dp 1)); "
     "the 1f1b pipeline needs >= pp 2"),
    ([*PP2, "trainer.global_batch_size=12", "parallelism.pp_schedule=interleaved_1f1b", "parallelism.pp_stages_per_rank=2"],
     "the interleaved_1f1b pipeline needs a multiple of pp 2"),
    ([*PP2, "parallelism.pp_schedule=interleaved_1f1b"], "interleaved_1f1b runs >= 2 virtual stages per rank"),
    ([*PP2, "parallelism.pp_stages_per_rank=2"], "only interleaved_1f1b runs several stages per rank"),
    ([*PP2, "parallelism.pp_split_points=[2,3]"], "parallelism.pp_split_points=[2, 3]: 1 increasing block indices in 1..3"),
    ([*PP2, "parallelism.pp_split_points=[4]"], "1 increasing block indices in 1..3"),
    ([*PP2, "model.tie_embeddings=true"], "model.tie_embeddings=True: tied embeddings would span the first and the last"),
    ([*PP2, "parallelism.distributed_checkpoint=false"], "checkpoints are DCP folders (true)"),
    (["parallelism=pp", "trainer.devices=1"], "pp needs >= 2 pipeline ranks"),
    (["parallelism=fsdp_pp", "trainer.devices=4", "trainer.micro_batch_size=4"],
     "parallelism.pipeline_parallel_size=1: fsdp_pp needs >= 2 pipeline ranks (fsdp_pp and fsdp_tp_pp: "
     "parallelism.pipeline_parallel_size, default trainer.num_nodes=1)"),
    (["parallelism=fsdp_pp", "trainer.devices=4", "parallelism.pipeline_parallel_size=3"],
     "parallelism.pipeline_parallel_size=3: must divide trainer.devices x num_nodes = 4"),
    (["parallelism=fsdp", "trainer.devices=2", "trainer.micro_batch_size=8", "parallelism.pp_schedule=gpipe"],
     "parallelism.pp_schedule='gpipe': has no effect under strategy fsdp (only pp, fsdp_pp, fsdp_tp_pp)"),
    (["parallelism=hsdp", "trainer.devices=4", "trainer.micro_batch_size=4", "parallelism.shard_size=3"],
     "parallelism.shard_size=3: must divide trainer.devices x num_nodes = 4"),
    (["parallelism=fsdp", "trainer.devices=4", "trainer.micro_batch_size=4", "parallelism.shard_size=2"],
     "parallelism.shard_size=2: has no effect under strategy fsdp (only hsdp)"),
    # fsdp_tp_pp: fsdp_tp's TP rules and the pipeline's, on one layout
    ([*TPP, "parallelism.tensor_parallel_size=4", "parallelism.pipeline_parallel_size=4"],
     "parallelism.pipeline_parallel_size=4: TP x PP = 4 x 4 must divide trainer.devices x num_nodes = 8 (dp = world / (tp x pp))"),
    ([*TPP, "parallelism.tensor_parallel_size=8", "parallelism.pipeline_parallel_size=1"],
     "parallelism.tensor_parallel_size=8: TP degree 8 must divide model.n_kv_heads=4"),
    ([*TPP, "parallelism.tensor_parallel_size=4", "parallelism.pipeline_parallel_size=1"],
     "parallelism.pipeline_parallel_size=1: fsdp_tp_pp needs >= 2 pipeline ranks"),
    ([*TPP, "parallelism.tensor_parallel_size=2", "parallelism.pipeline_parallel_size=4", "model.n_layers=6"],
     "model.n_layers=6: must divide into 4 equal pipeline stages"),
    ([*TPP, "parallelism.tensor_parallel_size=2", "parallelism.pipeline_parallel_size=2", "trainer.global_batch_size=8"],
     "trainer.global_batch_size=8: gives 1 micro-batches per step (global / (micro_batch_size 4 x dp 2)); the 1f1b pipeline needs >= pp 2"),
    ([*TPP, "parallelism.tensor_parallel_size=2", "parallelism.pipeline_parallel_size=2", "trainer.seq_len=33"],
     "parallelism.tensor_parallel_size=2: TP degree 2 must divide the sequence length 33"),
    (["parallelism=fsdp_pp", "trainer.devices=4", "parallelism.pipeline_parallel_size=2", "parallelism.tensor_parallel_size=2"],
     "parallelism.tensor_parallel_size=2: only fsdp_tp and fsdp_tp_pp take a TP degree"),
])
def test_bad_pipeline_and_hsdp_layouts_fail_in_validate_with_the_numbers(overrides, expected):
    assert expected in _error(overrides)


def test_post_training_stages_are_refused_under_a_pipeline():
    cfg = replace(llmexp.compose([*CPU, *PP2]), stage=SFTStageConfig(dataset="chat.jsonl"))
    with pytest.raises(ConfigError, match="pipeline parallelism runs stage=pretrain only; stage=sft: use fsdp or fsdp_tp"):
        check_rules(cfg)


def test_layouts_multiply_to_the_devices():
    cfg = llmexp.compose([*CPU, "parallelism=fsdp_pp", "trainer.devices=4", "trainer.num_nodes=2", "trainer.micro_batch_size=2"])
    layout = layout_of(cfg)  # pipeline across the 2 nodes, FSDP over the 4 devices of each
    assert (layout.dp, layout.tp, layout.pp, layout.world) == (4, 1, 2, 8)
    cfg = llmexp.compose([*CPU, "parallelism=hsdp", "trainer.devices=4", "trainer.num_nodes=2", "trainer.micro_batch_size=2"])
    layout = layout_of(cfg)  # shard within a node, replicate across nodes
    assert (layout.dp, layout.replicate, layout.shard) == (8, 2, 4)
    plan = llmexp.derive(cfg)
    assert plan.grad_accumulation == 1 and plan.strategy == "hsdp (dp 8 = 2 replicas x shard 4)"
    cfg = llmexp.compose([*CPU, "parallelism=fsdp_tp_pp", "trainer.devices=4", "trainer.num_nodes=4", "trainer.micro_batch_size=2",
                          "trainer.global_batch_size=16"])
    layout = layout_of(cfg)  # both defaults: TP within a node (4), 4 stages across the nodes, dp = 16 / (4 x 4)
    assert (layout.dp, layout.tp, layout.pp, layout.shard, layout.world) == (1, 4, 4, 1, 16)
    cfg = llmexp.compose([*CPU, "parallelism=fsdp_tp_pp", "trainer.devices=8", "trainer.num_nodes=4", "trainer.micro_batch_size=2",
                          "trainer.global_batch_size=32", "parallelism.pipeline_parallel_size=4", "parallelism.tensor_parallel_size=2"])
    plan = llmexp.derive(cfg)
    assert plan.strategy == "fsdp_tp_pp (dp 4 x tp 2 x pp 4)" and plan.pipeline.microbatches == 4


def _plan(*overrides: str):
    return llmexp.derive(llmexp.compose(["model=70b", "tokenizer=bpe_32k", "parallelism.precision=bf16-mixed",
                                         "model.tie_embeddings=false", "trainer.micro_batch_size=1", *overrides]))


@pytest.mark.parametrize("schedule, v, bubble", [
    ("gpipe", 1, 7 / (32 + 7)), ("1f1b", 1, 7 / (32 + 7)), ("interleaved_1f1b", 2, 7 / (2 * 32 + 7)),
])
def test_bubble_is_megatrons(schedule, v, bubble):
    # 70b: 80 blocks; pp 8 across 8 nodes, dp 8; global 256 / (micro 1 x dp 8) = 32 micro-batches
    plan = _plan("parallelism=fsdp_pp", "trainer.devices=8", "trainer.num_nodes=8", "trainer.global_batch_size=256",
                 f"parallelism.pp_schedule={schedule}", f"parallelism.pp_stages_per_rank={v}")
    pipeline = plan.pipeline
    assert pipeline.bubble == pytest.approx(bubble) and pipeline.microbatches == 32
    assert pipeline.layers_per_stage == [80 // (8 * v)] * (8 * v)
    assert plan.strategy == "fsdp_pp (dp 8 x pp 8)"
    # the time estimate pays for the bubble
    flat = _plan("parallelism=fsdp", "trainer.devices=8", "trainer.num_nodes=8", "trainer.global_batch_size=256")
    assert plan.estimated_seconds == pytest.approx(flat.estimated_seconds / (1 - bubble))


def test_activations_held_per_schedule():
    def acts(schedule: str, v: int = 1) -> float:
        return _plan("parallelism=pp", "trainer.devices=4", "trainer.global_batch_size=8", f"parallelism.pp_schedule={schedule}",
                     f"parallelism.pp_stages_per_rank={v}").memory.activations
    block = _plan("parallelism=single", "trainer.global_batch_size=1").memory
    # GPipe keeps all 8 micro-batches of its 20 blocks, 1F1B 4 on the first rank (= one micro-batch
    # of the whole model), interleaved 1 + (p-1)/(v p) times that (Narayanan et al. 2021)
    one_pass = block.activations  # 80 blocks + the head, one micro-batch
    assert acts("1f1b") == pytest.approx(one_pass, rel=0.02)
    assert acts("gpipe") == pytest.approx(2 * one_pass, rel=0.05)
    assert acts("interleaved_1f1b", 2) == pytest.approx(one_pass * (1 + 3 / 8), rel=0.02)


def test_weights_divide_by_stages_and_hsdp_by_the_shard_degree_only():
    full = _plan("parallelism=single", "trainer.global_batch_size=8").memory
    pp = _plan("parallelism=pp", "trainer.devices=8", "trainer.global_batch_size=8").memory
    assert full.weights / 8 < pp.weights < full.weights / 8 * 1.03  # the busiest stage: 10 blocks + the output projection
    fsdp_pp = _plan("parallelism=fsdp_pp", "trainer.devices=8", "trainer.num_nodes=8", "trainer.global_batch_size=256").memory
    assert fsdp_pp.weights == pytest.approx(pp.weights / 8)
    assert fsdp_pp.accumulated_gradients == pytest.approx(pp.weights)  # reduce-scattered after the last micro-batch
    hsdp = _plan("parallelism=hsdp", "trainer.devices=8", "trainer.num_nodes=8", "trainer.global_batch_size=64").memory
    fsdp8 = _plan("parallelism=fsdp", "trainer.devices=8", "trainer.global_batch_size=64").memory
    for key in ("weights", "gradients", "optimizer", "gathered"):
        assert getattr(hsdp, key) == pytest.approx(getattr(fsdp8, key))


# Llama-3.1-405B's shape (Meta's config: 126 blocks, d 16384, 128 heads / 8 KV heads, FFN 53248,
# vocabulary 128256) with 8 uneven stages (15 blocks on the first and last, beside the embedding
# and the output projection), as in the note's comparison with torchtitan's 3-D runs.
LLAMA_405B = ["model.n_layers=126", "model.d_model=16384", "model.n_heads=128", "model.n_kv_heads=8",
              "model.ffn_dim=53248", "model.vocab_size=128256", "model.max_seq_len=8192", "trainer.seq_len=8192",
              "trainer.devices=8", "trainer.num_nodes=64", "trainer.global_batch_size=512",
              "parallelism.activation_checkpointing=true"]


def test_405b_on_512_gpus_needs_tensor_parallelism_beside_a_pipeline():
    plan = _plan(*LLAMA_405B, "parallelism=fsdp_pp", "parallelism.pipeline_parallel_size=8",
                 "parallelism.pp_split_points=[15,31,47,63,79,95,111]")
    assert plan.pipeline.layers_per_stage == [15, 16, 16, 16, 16, 16, 16, 15]
    assert plan.pipeline.microbatches == 8 and plan.pipeline.bubble == pytest.approx(7 / 15)
    # torch's schedules keep a stage (~51B parameters here) unsharded in bf16, with fp32 gradients,
    # between micro-batches: far over an H100 without TP (torchtitan runs 405B as FSDP 8 x TP 8 x PP 8)
    stage = plan.memory.accumulated_gradients / 4
    assert 49e9 < stage < 53e9 and plan.memory.gathered >= stage * 2
    assert plan.warnings and plan.warnings[0].startswith("needs")
    assert llmexp.derive(llmexp.compose(["model=70b", "tokenizer=bpe_32k", "parallelism.precision=bf16-mixed",
                                         "trainer.micro_batch_size=1", *LLAMA_405B, "parallelism=fsdp_tp",
                                         "parallelism.activation_checkpointing_mode=full"])).memory.total < 0.9 * 80 * GiB


def test_405b_fsdp_tp_pp_plan_by_hand():
    """torchtitan's 3-D recipe (docs/performance.md, Table 5: FSDP 8 x TP 8 x PP 8, local batch 32 =
    8 micro-batches of 4 for 1F1B with 8 stages, full AC), the busiest rank's bytes worked out here
    from the shapes: pipeline rank 0 (15 blocks and the embedding; 8 micro-batches in flight)."""
    plan = _plan(*LLAMA_405B, "trainer.global_batch_size=256", "trainer.micro_batch_size=4", "parallelism=fsdp_tp_pp",
                 "parallelism.tensor_parallel_size=8", "parallelism.pipeline_parallel_size=8",
                 "parallelism.pp_split_points=[15,31,47,63,79,95,111]", "parallelism.activation_checkpointing_mode=full")
    d, q, kv, ffn, vocab, tp, dp, tokens = 16384, 16384, 1024, 53248, 128256, 8, 8, 4 * 8192
    block = 2 * d * q + 2 * d * kv + 3 * d * ffn  # matmul weights of one block (+ 2 d of norms)
    local = (15 * block + vocab * d) / tp + 15 * 2 * d + d  # this TP rank's stage: matmuls split, norms whole
    mem = plan.memory
    assert plan.strategy == "fsdp_tp_pp (dp 8 x tp 8 x pp 8)" and plan.pipeline.microbatches == 8
    assert mem.weights == pytest.approx(local / dp * 4) and mem.optimizer == pytest.approx(2 * mem.weights)  # fp32, sharded by FSDP
    assert mem.weights / GiB == pytest.approx(2.91, abs=0.01)
    # the stage stays gathered in bf16 for the whole step (plus one block's fp32 gradient), and its fp32
    # gradients accumulate unsharded until the last micro-batch (torch's schedules with FSDP2)
    assert mem.gathered == pytest.approx(local * 2 + (block / tp + 2 * d) * 4)
    assert mem.accumulated_gradients == pytest.approx(local * 4)
    # full AC: the fp32 residual stream entering each block, split along the sequence by TP, for the
    # 8 passes of 15 blocks 1F1B holds on rank 0, plus one block recomputed in backward
    norm_path = 2 * d * 4 / tp + d * 2
    recomputed = (2 * norm_path + (2 * q + 2 * kv + 4 * ffn) * 2 / tp) * tokens
    assert mem.activations_checkpointed == pytest.approx(d * 4 / tp * 8 * 15 * tokens + recomputed)
    assert mem.total / GiB == pytest.approx(82.87, abs=0.01)  # torchtitan measured 82.5 GiB (Float8, compile, AsyncTP)
