"""Data: sources of documents (sources.py), cleaning (clean.py), a document-level split
(split.py), cleaned parts and token shards on disk (shards.py), preparation with its
content-addressed cache (prepare.py, and `llmexp prepare`: cli.py), the weighted resumable
mixture order (sampler.py) and the DataModule (datamodule.py). See docs/data.md."""
