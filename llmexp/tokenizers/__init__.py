"""Tokenizers in tiktoken's format: BPE trained on the data, or tiktoken's named encodings."""
from llmexp.tokenizers.tokenizer import Tokenizer, load_tokenizer

__all__ = ["Tokenizer", "load_tokenizer"]
