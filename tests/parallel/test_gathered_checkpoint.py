"""A single-file fsdp/tp checkpoint never resumes silently wrong under single/ddp."""
from __future__ import annotations

import pytest
import torch

from llmexp.config.errors import ConfigError
from llmexp.parallel.checkpoint import loadable_checkpoint


def _checkpoint(path, strategy):
    torch.save({"state_dict": {}, "optimizer_states": [{"state": {}, "param_groups": []}],
                "llmexp": {"config": {"parallelism": {"strategy": strategy}}}}, path)
    return path


def test_gathered_fsdp_file_is_refused_under_single_with_the_fix(tmp_path):
    path = _checkpoint(tmp_path / "last.ckpt", "fsdp")
    with pytest.raises(ConfigError, match="resume with parallelism=fsdp"):
        loadable_checkpoint(path, "single")


def test_single_process_file_resumes_under_ddp(tmp_path):
    path = _checkpoint(tmp_path / "last.ckpt", "single")
    assert loadable_checkpoint(path, "ddp") == path
