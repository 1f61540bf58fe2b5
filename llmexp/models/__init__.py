"""Networks as plain PyTorch modules: no training, no parallelism in here."""
from llmexp.models.llama import KVCache, Llama, LlamaShape

__all__ = ["KVCache", "Llama", "LlamaShape"]
