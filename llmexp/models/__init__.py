"""Networks as plain PyTorch modules: no training, no parallelism in here."""
from llmexp.models.llama import KVCache, Llama, LlamaShape, shape_from_fields

__all__ = ["KVCache", "Llama", "LlamaShape", "shape_from_fields"]
