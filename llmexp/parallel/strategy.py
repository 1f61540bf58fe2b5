"""parallelism group -> Lightning accelerator, strategy and precision."""
from __future__ import annotations

from llmexp.config.schema import Config
from llmexp.layout import MODEL_PARALLEL
from llmexp.plan import layout_of


def resolve_accelerator(requested: str) -> str:
    import torch

    if requested == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return requested


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
    if name in MODEL_PARALLEL:
        from lightning.pytorch.strategies import ModelParallelStrategy

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
