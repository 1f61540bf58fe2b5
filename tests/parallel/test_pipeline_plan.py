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
     "parallelism.pipeline_parallel_size=1: fsdp_pp needs >= 2 pipeline ranks (fsdp_pp: parallelism.pipeline_parallel_size, "
     "default trainer.num_nodes=1)"),
    (["parallelism=fsdp_pp", "trainer.devices=4", "parallelism.pipeline_parallel_size=3"],
     "parallelism.pipeline_parallel_size=3: must divide trainer.devices x num_nodes = 4"),
    (["parallelism=fsdp", "trainer.devices=2", "trainer.micro_batch_size=8", "parallelism.pp_schedule=gpipe"],
     "parallelism.pp_schedule='gpipe': has no effect under strategy fsdp (only pp, fsdp_pp)"),
    (["parallelism=hsdp", "trainer.devices=4", "trainer.micro_batch_size=4", "parallelism.shard_size=3"],
     "parallelism.shard_size=3: must divide trainer.devices x num_nodes = 4"),
    (["parallelism=fsdp", "trainer.devices=4", "trainer.micro_batch_size=4", "parallelism.shard_size=2"],
     "parallelism.shard_size=2: has no effect under strategy fsdp (only hsdp)"),
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
