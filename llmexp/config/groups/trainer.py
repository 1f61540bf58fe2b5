"""trainer group: devices, budget, batch sizes and the run's intervals."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from llmexp.config.checks import choice, positive, require


@dataclass
class TrainerConfig:
    accelerator: str = choice(Literal["auto", "cpu", "gpu"], "auto")
    devices: int = 1
    num_nodes: int = 1
    max_steps: Optional[int] = None  # both set: whichever is reached first (as in Lightning);
    max_tokens: Optional[int] = None  # neither: the plan group decides the budget
    seq_len: Optional[int] = None  # None: the model's max_seq_len
    micro_batch_size: int = 8  # sequences per device per forward pass
    global_batch_size: int = 8  # sequences per optimizer step, all devices together
    log_every: int = 10
    val_every: int = 100  # optimizer steps between validations
    val_batches: int = 20
    checkpoint_every: int = 100  # optimizer steps between checkpoints (step-N.ckpt; last.ckpt links the newest)
    keep_checkpoints: int = 2  # step-N.ckpt files kept: a corrupt newest one falls back to the one before
    num_workers: int = 0
    seed: int = 1234


def check_trainer(t: TrainerConfig) -> None:
    positive("trainer.devices", t.devices)
    positive("trainer.num_nodes", t.num_nodes)
    positive("trainer.max_steps", t.max_steps, optional=True)
    positive("trainer.max_tokens", t.max_tokens, optional=True)
    positive("trainer.seq_len", t.seq_len, optional=True)
    positive("trainer.micro_batch_size", t.micro_batch_size)
    positive("trainer.global_batch_size", t.global_batch_size)
    for key in ("log_every", "val_every", "val_batches", "checkpoint_every", "keep_checkpoints"):
        positive(f"trainer.{key}", getattr(t, key))
    require(t.num_workers >= 0, "trainer.num_workers", t.num_workers, "must be >= 0")
    require(0 <= t.seed < 2**32, "trainer.seed", t.seed, "must be in [0, 2^32)")
