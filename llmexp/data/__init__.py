"""Data: sources of documents, a document-level split, token caches and the DataModule."""
