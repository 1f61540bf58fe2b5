"""Loaders for the smoke tasks: JSONL files beside this module, as `datasets` splits.

lm-eval calls them through `custom_dataset: !function smoke_data.<name>` with the task's
metadata as keyword arguments (ignored here), so the tasks never touch the network.
"""
from __future__ import annotations

import json
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def _split(name: str) -> datasets.DatasetDict:
    rows = [json.loads(line) for line in (HERE / f"{name}.jsonl").read_text().splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def mc(**_) -> datasets.DatasetDict:
    return _split("smoke_mc")


def gen(**_) -> datasets.DatasetDict:
    return _split("smoke_gen")


def ppl(**_) -> datasets.DatasetDict:
    return _split("smoke_ppl")
