"""Where the training stream resumes: the samples consumed before a checkpoint, saved with it.

Every stage's datamodule keeps this state, so a resumed run starts its sampler where the saved
run stopped, also under another data-parallel degree (the global count is split anew)."""
from __future__ import annotations

from typing import Any, Optional

import lightning as L

from llmexp.parallel.parallelize import data_parallel_rank_and_size


class ResumableDataModule(L.LightningDataModule):
    """Subclasses set `self.micro` (micro-batch size) and call `resume_start(dp_size)` for the
    first local sample of this rank."""

    micro: int
    _resume_global_samples: Optional[int] = None
    _resume_local_samples: int = 0

    def resume_start(self, dp_size: int) -> int:
        if self._resume_global_samples is not None:  # the saving run may have had another dp size
            return self._resume_global_samples // dp_size
        return self._resume_local_samples

    def state_dict(self) -> dict[str, Any]:
        # Checkpoints are taken at optimizer-step boundaries, so this is exact.
        t = self.trainer
        consumed = t.global_step * t.accumulate_grad_batches * self.micro
        return {"consumed_samples": consumed, "global_samples": consumed * data_parallel_rank_and_size(t)[1]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_local_samples = int(state["consumed_samples"])
        self._resume_global_samples = state.get("global_samples")
