"""parallelism group -> Lightning accelerator, strategy and precision."""
from __future__ import annotations

from llmexp.config.schema import Config


def resolve_accelerator(requested: str) -> str:
    import torch

    if requested == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return requested


def lightning_strategy(cfg: Config, accelerator: str):
    name = cfg.parallelism.strategy
    if name == "single":
        from lightning.pytorch.strategies import SingleDeviceStrategy

        return SingleDeviceStrategy(device="cuda:0" if accelerator == "gpu" else "cpu")
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        # gloo on CPU, nccl on GPU (Lightning's choice); parameters arrive as overrides, so
        # every rank composes the same config.
        return DDPStrategy()
    return "auto"
