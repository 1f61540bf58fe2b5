"""Layouts in the validate and derive passes (no torch): degrees that do not divide fail with
the numbers; the plan's accumulation and memory per device follow the layout; auto picks one."""
from __future__ import annotations

import importlib.util

import pytest

import llmexp
from llmexp.config.errors import ConfigError
from llmexp.plan import layout_of

CPU = ["trainer.accelerator=cpu", "parallelism.precision=32"]


def _error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        llmexp.compose([*CPU, *overrides])
    return str(err.value)


@pytest.mark.parametrize("overrides, expected", [
    # tiny: 8 heads, 4 KV heads, ffn 704, seq 256
    (["parallelism=tp", "trainer.devices=3"], "TP degree 3 must divide model.n_heads=8"),
    (["parallelism=tp", "trainer.devices=8"], "TP degree 8 must divide model.n_kv_heads=4"),
    (["parallelism=tp", "trainer.devices=2", "model.ffn_dim=705"], "TP degree 2 must divide model.ffn_dim=705"),
    (["parallelism=fsdp_tp", "trainer.devices=4", "parallelism.tensor_parallel_size=3"],
     "parallelism.tensor_parallel_size=3: must divide trainer.devices x num_nodes = 4"),
    (["parallelism=fsdp_tp", "trainer.devices=8", "trainer.num_nodes=2"], "TP degree 8 must divide model.n_kv_heads=4"),
    (["parallelism=ddp", "parallelism.tensor_parallel_size=2", "trainer.devices=2", "trainer.global_batch_size=32"],
     "only fsdp_tp and fsdp_tp_pp take a TP degree"),
    (["parallelism=fsdp", "trainer.devices=2"],  # recipe: micro 16, global 16
     "trainer.global_batch_size=16: must be a multiple of micro_batch_size x data-parallel degree = 16 x 2"),
    (["parallelism=fsdp_tp", "trainer.devices=4", "parallelism.tensor_parallel_size=2", "trainer.global_batch_size=24",
      "trainer.micro_batch_size=8"], "= 8 x 2 (fsdp_tp (dp 2 x tp 2): 4 devices)"),
    (["parallelism.strategy=zero3"], "allowed: auto, single, ddp, fsdp, tp, fsdp_tp, hsdp, pp, fsdp_pp, fsdp_tp_pp, deepspeed"),
    (["parallelism=single", "trainer.devices=2"], "use ddp"),
    (["parallelism=ddp", "parallelism.cpu_offload=true", "trainer.devices=2", "trainer.global_batch_size=32"],
     "offload is an fsdp or deepspeed option"),
    (["parallelism.activation_checkpointing_mode=some"], "allowed: full, selective"),
])
def test_bad_layouts_fail_in_validate_with_the_numbers(overrides, expected):
    assert expected in _error(overrides)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed")
def test_deepspeed_without_the_package_is_a_clear_config_error():
    assert "needs the deepspeed package (pip install deepspeed)" in _error(["parallelism=deepspeed", "trainer.devices=2",
                                                                           "trainer.global_batch_size=32"])


def test_tp_ranks_share_a_batch_so_accumulation_uses_the_data_parallel_degree():
    # 2 devices as TP: one data-parallel replica, so micro 16 x 1 fits a global batch of 16.
    plan = llmexp.derive(llmexp.compose([*CPU, "parallelism=tp", "trainer.devices=2"]))
    assert plan.grad_accumulation == 1 and plan.world_size == 2
    cfg = llmexp.compose([*CPU, "parallelism=fsdp_tp", "trainer.devices=8", "parallelism.tensor_parallel_size=2",
                          "trainer.micro_batch_size=2", "trainer.global_batch_size=32"])
    layout = layout_of(cfg)
    assert (layout.dp, layout.tp) == (4, 2) and llmexp.derive(cfg).grad_accumulation == 4


def _memory(*overrides: str):
    return llmexp.derive(llmexp.compose(["model=7b", "tokenizer=bpe_32k", "parallelism.precision=bf16-mixed",
                                         "trainer.micro_batch_size=1", "trainer.global_batch_size=64", *overrides])).memory


def test_memory_per_device_follows_the_layout():
    ddp = _memory("parallelism=ddp", "trainer.devices=8")
    fsdp = _memory("parallelism=fsdp", "trainer.devices=8")
    tp = _memory("parallelism=tp", "trainer.devices=8")
    offload = _memory("parallelism=fsdp", "trainer.devices=8", "parallelism.cpu_offload=true")
    for key in ("weights", "gradients", "optimizer"):
        assert getattr(fsdp, key) == pytest.approx(getattr(ddp, key) / 8)  # sharded by dp
        assert getattr(ddp, key) / 8 < getattr(tp, key) < getattr(ddp, key) / 7.9  # norms stay whole
        assert getattr(offload, key) == 0  # on the CPU
    assert fsdp.gathered > 0 and ddp.gathered == 0 and tp.gathered == 0
    assert fsdp.activations == ddp.activations  # FSDP does not split activations
    assert tp.activations < ddp.activations / 3  # TP (with sequence parallelism) does
    zero2 = _memory("parallelism=fsdp", "trainer.devices=8", "parallelism.reshard_after_forward=false")
    assert zero2.gathered > fsdp.gathered  # gathered weights kept until backward
    selective = _memory("parallelism=fsdp", "trainer.devices=8", "parallelism.activation_checkpointing=true",
                        "parallelism.activation_checkpointing_mode=selective")
    full = _memory("parallelism=fsdp", "trainer.devices=8", "parallelism.activation_checkpointing=true")
    assert full.activations_checkpointed < selective.activations_checkpointed < selective.activations


def test_auto_picks_a_layout_from_model_size_devices_and_memory():
    def auto(*overrides):
        return layout_of(llmexp.compose(["parallelism=auto", "tokenizer=bpe_32k", "plan.accelerator=h100", *overrides]))

    assert auto("model=125m").strategy == "single"
    assert auto("model=125m", "trainer.devices=8", "trainer.global_batch_size=64").strategy == "ddp"
    assert auto("model=7b", "trainer.devices=8", "trainer.global_batch_size=64",
                "trainer.micro_batch_size=1").strategy == "fsdp"  # a 7B replica does not fit 90% of 80 GiB
    big = llmexp.derive(llmexp.compose(["tokenizer=bpe_32k", "model=70b", "trainer.devices=8", "trainer.num_nodes=2",
                                        "trainer.micro_batch_size=1", "trainer.global_batch_size=64"]))
    # 16 bytes/param over 16 devices is 65 GiB before activations: TP, and full checkpointing
    assert big.strategy == "fsdp_tp (dp 4 x tp 4)" and big.memory.activation_checkpointing
    assert big.memory.total <= 0.9 * 80 * 2**30 and not big.warnings


def test_a_70b_fsdp_tp_plan_fits_an_80_gib_device():
    plan = llmexp.derive(llmexp.compose([
        "model=70b", "tokenizer=bpe_32k", "parallelism=fsdp_tp", "trainer.devices=8", "trainer.num_nodes=16",
        "trainer.micro_batch_size=1", "trainer.global_batch_size=512"]))
    assert plan.strategy == "fsdp_tp (dp 16 x tp 8)" and plan.grad_accumulation == 32
    assert plan.memory.total < 80 * 2**30
