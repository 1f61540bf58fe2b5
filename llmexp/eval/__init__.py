"""Evaluation: an lm-eval adapter (`lm.py`), offline smoke tasks (`tasks/`), the `stage=eval`
runner and in-training callback (`harness.py`), and intrinsic metrics (`intrinsic.py`).

Importing this package is cheap; lm-eval is imported by the modules that use it.
"""
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "tasks"  # lm-eval --include_path for the smoke tasks

__all__ = ["TASKS_DIR"]
