"""parallelism.float8: the blocks' linear layers train with float8 matmuls (torchao's
convert_to_float8_training, dynamic tensorwise scaling), applied from outside the model before
checkpointing, compile and FSDP, as torchtitan does.

NOT RUN ON A GPU in this task: torchao is an optional extra (`pip install torchao`), absent
here, and float8 needs fp8 tensor cores (H100 and newer); validation refuses it on the CPU.
"""
from __future__ import annotations

from torch import nn


def _converted(module: nn.Module, fqn: str) -> bool:
    """Block linears whose dims fp8 GEMMs take (multiples of 16); the output projection, whose
    logits feed the loss, and scalar heads stay in bf16."""
    return (isinstance(module, nn.Linear) and "layers." in fqn
            and module.in_features % 16 == 0 and module.out_features % 16 == 0)


def apply_float8(model: nn.Module, fsdp: bool) -> None:
    """Linear -> Float8Linear in place. Under FSDP the shards are all-gathered in float8 (half
    the bytes of bf16), their scales computed per gather."""
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    config = Float8LinearConfig(enable_fsdp_float8_all_gather=fsdp)
    convert_to_float8_training(model, config=config, module_filter_fn=_converted)
