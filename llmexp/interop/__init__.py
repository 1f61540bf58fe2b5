"""Interchange with the Hugging Face ecosystem (apps layer): export llmexp runs as transformers
folders (`hf.py`, `tokenizer.py`) and load any supported model for evaluation (`load.py`).

Reading a transformers folder's config is core (`llmexp/hf_config.py`, no torch: validation
uses it); loading its weights and tokenizer into a run is runtime (`llmexp/models/hf.py`,
`llmexp/tokenizers/hf.py`).
"""
