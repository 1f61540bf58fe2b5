"""Networks as plain PyTorch modules: no training, no parallelism in here."""
from llmexp.models.llama import Llama, LlamaShape

__all__ = ["Llama", "LlamaShape"]
