"""parallelism group -> Lightning accelerator, strategy and precision."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from lightning.fabric.strategies.model_parallel import _has_dtensor_modules
from lightning.pytorch.strategies import ModelParallelStrategy

from llmexp.artifacts import META, is_distributed_checkpoint
from llmexp.config.precedence import typed_keys
from llmexp.config.schema import Config
from llmexp.layout import MODEL_PARALLEL, PIPELINED, Layout
from llmexp.plan import layout_of


def resolve_accelerator(requested: str) -> str:
    import torch

    if requested == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return requested


def cpu_precision(cfg: Config, accelerator: str, typed: Sequence[str]) -> Config:
    """bf16 on a CPU that has no native bf16 matrix multiply (no AMX, no AVX512-BF16): oneDNN
    emulates it, ~25x slower than fp32 (measured on an AVX2 EPYC: a 4096x256 @ 256x704 matmul
    1.28 s in bf16, 48 ms in fp32). A bf16 precision that came from a recipe or layout default
    trains in fp32 there, with a one-line note; one typed on the command line is kept, with a
    warning. config.yaml keeps the config as given, so a resume on a bf16 machine uses bf16."""
    import torch

    precision = cfg.parallelism.precision
    if accelerator != "cpu" or not precision.startswith("bf16") or native_cpu_bf16():
        return cfg
    cpu = torch.backends.cpu.get_cpu_capability()
    if "parallelism.precision" in typed_keys(typed):
        print(f"llmexp: warning: parallelism.precision={precision} on a CPU without native bf16 ({cpu}): "
              "bf16 matrix multiplies are emulated, many times slower than 32", flush=True)  # stdout: stderr is for errors
        return cfg
    print(f"llmexp: note: training in fp32 (precision 32): this CPU has no native bf16 ({cpu}), where "
          f"{precision} is many times slower; parallelism.precision={precision} on the command line keeps it",
          flush=True)
    return replace(cfg, parallelism=replace(cfg.parallelism, precision="32"))


def native_cpu_bf16() -> bool:
    """Whether oneDNN runs bf16 matmuls natively on this CPU (AMX or AVX512-BF16): torch's own
    check, which its CPU bf16 tests use; no public API answers it yet."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def lightning_strategy(cfg: Config, accelerator: str):
    """Lightning's own strategies; process launch (subprocesses, torchrun, SLURM) is theirs too.
    Parameters arrive as overrides, so every rank composes the same config and layout."""
    layout = layout_of(cfg)
    name = layout.strategy
    if name == "single":
        from lightning.pytorch.strategies import SingleDeviceStrategy

        return SingleDeviceStrategy(device="cuda:0" if accelerator == "gpu" else "cpu")
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy()  # gloo on CPU, nccl on GPU (Lightning's choice)
    if name in ("hsdp", *PIPELINED):
        return MeshStrategy(layout, cfg.parallelism.distributed_checkpoint)
    if name in MODEL_PARALLEL:
        # The mesh (dp, tp) reaches StageModule.configure_model, which applies FSDP2/TP
        # (llmexp/parallel/parallelize.py).
        kwargs = dict(data_parallel_size=layout.dp * layout.cp, tensor_parallel_size=layout.tp,
                      save_distributed_checkpoint=cfg.parallelism.distributed_checkpoint)
        if layout.cp > 1:  # CP ranks sit in the data-parallel dimension and share a batch
            from llmexp.parallel.context import ContextParallelStrategy

            return ContextParallelStrategy(layout.cp, **kwargs)
        return ModelParallelStrategy(**kwargs)
    if name == "deepspeed":
        from lightning.pytorch.strategies import DeepSpeedStrategy

        return DeepSpeedStrategy(stage=cfg.parallelism.deepspeed_stage, offload_optimizer=cfg.parallelism.cpu_offload)
    raise ValueError(f"unknown strategy {name!r}")  # the validate pass rejects it first


MESH_DIMS = ("pipeline_parallel", "replicate", "shard", "tensor_parallel")


class MeshStrategy(ModelParallelStrategy):
    """Lightning's ModelParallelStrategy over llmexp's N-D mesh (pp, fsdp_pp, hsdp): dimensions
    MESH_DIMS, pipeline outermost (across nodes), with "data_parallel" = replicate x shard
    flattened, which samplers (data_parallel_rank_and_size) and FSDP read."""

    def __init__(self, layout: Layout, distributed_checkpoint: bool):
        super().__init__(data_parallel_size=layout.dp, tensor_parallel_size=layout.tp,
                         save_distributed_checkpoint=distributed_checkpoint)
        self.layout = layout

    def setup_environment(self) -> None:
        from torch.distributed.device_mesh import init_device_mesh

        self._setup_distributed()
        l = self.layout
        mesh = init_device_mesh(self.root_device.type, (l.pp, l.replicate, l.dp // l.replicate, l.tp),
                                mesh_dim_names=MESH_DIMS)
        self.data_parallel_mesh = mesh["replicate", "shard"]._flatten("data_parallel")
        self._device_mesh = mesh
        self.lightning_module._device_mesh = mesh

    @property
    def distributed_sampler_kwargs(self) -> dict:
        return {"num_replicas": self.data_parallel_mesh.size(), "rank": self.data_parallel_mesh.get_local_rank()}

    def optimizer_state(self, optimizer):
        state = super().optimizer_state(optimizer)
        pipeline = getattr(self.lightning_module, "pipeline", None)
        return pipeline.merge_param_groups(state) if pipeline is not None else state

    def load_checkpoint(self, checkpoint_path, weights_only=None):
        # Lightning loads only models holding DTensors; a pipeline without FSDP holds plain tensors.
        if _has_dtensor_modules(self.model):
            return super().load_checkpoint(checkpoint_path, weights_only=weights_only)
        return self._load_plain(Path(self.broadcast(checkpoint_path)), weights_only)

    def _load_plain(self, path: Path, weights_only):
        """A DCP folder or a single file into a module of plain tensors (a pipeline stage): each
        rank reads the parameters it holds, by name, and their optimizer state; returns the rest,
        as Lightning's own loader does."""
        import torch
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
            set_optimizer_state_dict,
        )

        module = self.model
        if is_distributed_checkpoint(path):
            state = {"state_dict": get_model_state_dict(module)}
            dcp.load(state, checkpoint_id=path)
            module.load_state_dict(state["state_dict"])
            for i, optimizer in enumerate(self.optimizers):
                state = {f"optimizer_{i}": get_optimizer_state_dict(module, optimizer)}
                dcp.load(state, checkpoint_id=path)
                set_optimizer_state_dict(module, optimizer, state[f"optimizer_{i}"])
            return torch.load(path / META, weights_only=weights_only)
        checkpoint = torch.load(path, mmap=True, map_location="cpu", weights_only=weights_only)
        full = checkpoint.pop("state_dict")
        module.load_state_dict({name: full[name] for name in module.state_dict()})
        for optimizer, state in zip(self.optimizers, checkpoint.get("optimizer_states", [])):
            set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))
        return checkpoint
