"""Context parallelism and float8, the GPU-only options: refused on the CPU (and without a GPU or
torchao) in one line, planned anywhere (dry_run), laid out and handed to Lightning as the GPU
run would be. Their GPU code paths (llmexp/parallel/context.py, float8.py) were not run here."""
from __future__ import annotations

import importlib.util
import json
import os
import socket

import pytest

import llmexp
from llmexp.config.errors import ConfigError
from llmexp.layout import Layout
from llmexp.models.heads import ScalarModel
from llmexp.models.llama import Llama, shape_from_fields
from llmexp.parallel.float8 import _converted
from llmexp.plan import attention_dims, float8_flops, layout_of
from tests.conftest import run_cli

# Llama-3.1-8B on 8 H100s, planned from this CPU machine.
H100 = ["model=llama3_1_8b", "trainer.accelerator=auto", "plan.accelerator=h100", "trainer.devices=8",
        "trainer.seq_len=8192", "trainer.micro_batch_size=1", "trainer.global_batch_size=64",
        "parallelism.precision=bf16-mixed", "dry_run=true"]
CP = ["parallelism=fsdp", "parallelism.context_parallel_size=2"]
FLOAT8 = ["parallelism=fsdp", "parallelism.float8=true"]


def _error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        llmexp.compose(overrides)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("overrides, expected", [
    ([*H100, *CP, "trainer.accelerator=cpu"], "parallelism.context_parallel_size=2: runs on GPUs only"),
    ([*H100, *FLOAT8, "trainer.accelerator=cpu"], "parallelism.float8=True: runs on GPUs only"),
    ([*H100, *CP, "parallelism=ddp"], "use parallelism=fsdp or fsdp_tp (not ddp)"),
    ([*H100, *CP, "parallelism.context_parallel_size=3"], "CP x TP = 3 x 1 must divide trainer.devices x num_nodes = 8"),
    ([*H100, *CP, "trainer.seq_len=8190"], "the sequence length 8190 must be a multiple of 2 x CP x TP = 4"),
    ([*H100, "parallelism=fsdp_tp", "parallelism.tensor_parallel_size=4", "parallelism.context_parallel_size=2",
      "trainer.seq_len=8200"], "must be a multiple of 2 x CP x TP = 16"),
    ([*H100, *CP, "model.sliding_window=4096"], "model.sliding_window must be null"),
    ([*H100, *FLOAT8, "plan.accelerator=a100"], "a100 has no float8 tensor cores in llmexp's table: l4, h100"),
    ([*H100, *FLOAT8, "parallelism.precision=32"], "set parallelism.precision=bf16-mixed or bf16-true"),
    ([*H100, *FLOAT8, "parallelism=fsdp_tp"], "float8 runs under single, ddp or fsdp (not fsdp_tp"),
])
def test_bad_gpu_options_fail_in_validate(overrides, expected):
    assert expected in _error(overrides)


def test_a_run_without_a_gpu_is_refused_with_exit_2():
    """What this machine says to a real run: one line, exit 2, before torch loads."""
    done = run_cli(*[o for o in H100 if o != "dry_run=true"], *CP, "trainer.max_steps=1")
    assert done.returncode == 2
    assert done.stderr.strip() == ("llmexp: error: parallelism.context_parallel_size=2: runs on GPUs only and no GPU is "
                                   "visible on this machine: remove it, or plan only (dry_run=true)")


def test_float8_without_torchao_names_the_install(monkeypatch):
    if importlib.util.find_spec("torchao") is not None:
        pytest.skip("torchao is installed here")
    monkeypatch.setattr("llmexp.config.rules.gpu_present", lambda: True)  # a GPU machine without torchao
    message = _error([*[o for o in H100 if o != "dry_run=true"], *FLOAT8])
    assert message == "parallelism.float8=True: needs the torchao package, which is not installed: pip install torchao"


def test_context_parallelism_divides_activations_and_shards_fsdp_over_dp_x_cp():
    plain = llmexp.derive(llmexp.compose([*H100, "parallelism=fsdp"]))
    cp = llmexp.derive(llmexp.compose([*H100, *CP]))
    cfg = llmexp.compose([*H100, *CP])
    assert layout_of(cfg) == Layout("fsdp", 4, 1, 2)
    assert cp.strategy == "fsdp (dp 4 x cp 2)"
    # Each rank holds half of every sequence: every activation term halves.
    assert cp.memory.activations == pytest.approx(plain.memory.activations / 2)
    assert cp.memory.activations_checkpointed == pytest.approx(plain.memory.activations_checkpointed / 2)
    # FSDP still shards over all 8 ranks; the CP pairs read one batch: half the data-parallel
    # degree, twice the accumulation for the same global batch.
    assert cp.memory.weights == plain.memory.weights and cp.memory.optimizer == plain.memory.optimizer
    assert (plain.grad_accumulation, cp.grad_accumulation) == (8, 16)
    assert cp.estimated_seconds == plain.estimated_seconds  # the same FLOPs on the same devices


def test_float8_times_the_block_matmuls_at_the_fp8_peak():
    base = llmexp.derive(llmexp.compose([*H100, "parallelism=fsdp"]))
    fp8 = llmexp.derive(llmexp.compose([*H100, *FLOAT8]))
    d, (q, kv), ffn, layers = 4096, (4096, 1024), 14336, 32
    blocks = 6 * layers * (d * q + 2 * d * kv + q * d + 3 * d * ffn)  # every dim of Llama-3.1-8B is a multiple of 16
    assert attention_dims(llmexp.compose([*H100, *FLOAT8]).model) == (q, kv)
    share = blocks / base.flops_per_token
    assert fp8.float8_share == pytest.approx(share) and 0.7 < share < 0.75
    # H100: fp8 1979 vs bf16 989 TFLOP/s dense.
    assert fp8.estimated_seconds == pytest.approx(base.estimated_seconds * ((1 - share) + share * 989 / 1979))
    assert fp8.memory.total == base.memory.total  # the plan claims no memory change
    assert "float8: 72% of the FLOPs at the fp8 peak" in llmexp.plan.format_plan(fp8)


def test_float8_converts_what_the_plan_times():
    """The runtime's module filter (torchao's module_filter_fn) and the plan count the same
    layers: block linears with dims divisible by 16; not the output projection, not the head."""
    cfg = llmexp.compose(["model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.n_kv_heads=2",
                          "model.ffn_dim=120", "tokenizer.vocab_size=512"])
    model = ScalarModel(Llama(shape_from_fields(cfg.model, 512)))
    converted = {fqn: m for fqn, m in model.named_modules() if _converted(m, fqn)}
    assert sorted({fqn.rsplit(".", 1)[1] for fqn in converted}) == ["wk", "wo", "wq", "wv"]  # ffn 120: not a multiple of 16
    assert 6 * sum(m.in_features * m.out_features for m in converted.values()) == float8_flops(cfg.model, 32)


def test_context_parallel_strategy_gives_cp_groups_one_batch():
    from llmexp.parallel.context import ContextParallelStrategy
    from llmexp.parallel.strategy import lightning_strategy

    strategy = lightning_strategy(llmexp.compose([*H100, *CP]), "gpu")
    assert isinstance(strategy, ContextParallelStrategy)
    assert (strategy._data_parallel_size, strategy._tensor_parallel_size, strategy.context_parallel_size) == (8, 1, 2)

    class Dim:  # Lightning's mesh dimension "data_parallel" (dp x cp ranks), seen from rank 5
        def size(self):
            return 8

        def get_local_rank(self):
            return 5

    strategy._device_mesh = {"data_parallel": Dim()}
    assert strategy.distributed_sampler_kwargs == {"num_replicas": 4, "rank": 2}  # ranks 4 and 5 read batch 2



def _shard_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from llmexp.parallel.context import ContextParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    cp = ContextParallel(init_device_mesh("cpu", (world,), mesh_dim_names=("context_parallel",))["context_parallel"])
    batch = torch.arange(17).repeat(2, 1)  # (B, T+1) as pretraining's windows
    inputs, targets, positions = cp.shard(batch[:, :-1], batch[:, 1:])
    cp.leave()
    with open(f"{out}.{rank}", "w") as f:
        json.dump([t.tolist() for t in (inputs, targets, positions)], f)
    dist.destroy_process_group()


def test_context_parallel_gives_each_rank_balanced_chunks_with_their_positions(tmp_path):
    """The sharding half of the CP step on 2 gloo processes (ring attention itself exists for
    CUDA's SDPA kernels only): 16 positions in 4 chunks, rank 0 keeps the first and last,
    rank 1 the middle two; targets and RoPE positions follow their inputs."""
    import torch

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = str(tmp_path / "shard")
    torch.multiprocessing.spawn(_shard_worker, args=(2, port, out), nprocs=2)
    held = {rank: json.loads(open(f"{out}.{rank}").read()) for rank in (0, 1)}
    expected = {0: [0, 1, 2, 3, 12, 13, 14, 15], 1: [4, 5, 6, 7, 8, 9, 10, 11]}
    for rank, (inputs, targets, positions) in held.items():
        assert inputs == positions == [expected[rank]] * 2
        assert targets == [[i + 1 for i in expected[rank]]] * 2
