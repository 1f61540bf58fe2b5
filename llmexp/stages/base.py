"""What every stage shares: the model, optimizer and schedule, logging, RNG in checkpoints."""
from __future__ import annotations

import random
import time
from typing import Any, Callable, Optional

import lightning as L
import numpy as np
import torch

from llmexp.config.schema import Config
from llmexp.models import Llama, LlamaShape
from llmexp.models.llama import shape_from_fields
from llmexp.optim import build_optimizer, lr_multiplier
from llmexp.outcomes import Diverged
from llmexp.parallel.checkpoint import PARAM_NAMES, optimizer_param_names, rescale_batch_progress
from llmexp.parallel.context import ContextParallel, context_parallel_of
from llmexp.parallel.parallelize import build_model, data_parallel_rank_and_size, set_gradient_sync
from llmexp.parallel.pipelining import Pipeline, build_pipeline, clip_grad_norm
from llmexp.plan import Plan


def model_shape(cfg: Config, vocab_size: int) -> LlamaShape:
    return shape_from_fields(cfg.model, vocab_size)


class StageModule(L.LightningModule):
    """Subclasses implement `loss(batch) -> (loss, n_tokens)` for their batch format."""

    val_loss_meaning = "cross-entropy of the validation tokens, nats/token"  # what val/loss measures, in its units
    # (logits, targets) -> mean loss of a micro-batch: stages that run under pipeline parallelism
    pipeline_loss: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None

    def __init__(self, cfg: Config, plan: Plan, flat_config: dict[str, Any], checkpoint_meta: dict[str, Any]):
        super().__init__()
        self.cfg, self.plan = cfg, plan
        self.shape = model_shape(cfg, plan.vocab_size)
        self.checkpoint_meta = checkpoint_meta  # config, command, commit, data fingerprint
        self.save_hyperparameters(flat_config)  # loggers (W&B) see the config as flat dotted keys
        self.model: Optional[Llama] = None
        self._last_step_time: Optional[float] = None
        self._tokens_since: int = 0
        self._step_losses: list[torch.Tensor] = []  # this optimizer step's micro-batch losses
        self.last_val_step: Optional[int] = None
        self.context_parallel: Optional[ContextParallel] = None  # parallelism.context_parallel_size > 1
        self.pipeline: Optional[Pipeline] = None  # pp, fsdp_pp: this rank's stages and schedule
        # A pipeline schedule runs forward and backward itself: the stage steps the optimizer (pipeline_step).
        self.automatic_optimization = plan.pipeline is None

    def configure_model(self) -> None:
        # Built here, not in __init__, so strategies can shard it as it is created.
        if self.model is None:
            # FSDP2/TP from outside the model; the mesh is set by ModelParallelStrategy only.
            # init_from: a resumed run overwrites these weights with its own checkpoint.
            device = self.trainer.strategy.root_device if self._trainer is not None else self.device
            if self.plan.pipeline is not None:
                self.model, self.pipeline = build_pipeline(lambda: Llama(self.shape), self.cfg, self.plan.grad_accumulation,
                                                           self.device_mesh, device, self.plan.params_total, self.pipeline_loss)
                return
            self.model = build_model(lambda: Llama(self.shape), self.cfg.parallelism, self.device_mesh, device,
                                     self.plan.params_total, self.cfg.trainer.seed, self.cfg.init_from)
            self.context_parallel = context_parallel_of(self.device_mesh, self.cfg.parallelism)

    def forward(self, tokens: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.model(tokens, **kwargs)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, n_tokens = self.loss(batch)
        self._tokens_since += n_tokens * data_parallel_rank_and_size(self.trainer)[1]  # TP ranks share a batch
        self.record_step_loss(loss)
        return loss

    def pipeline_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One optimizer step under pipeline parallelism: the schedule runs forward and backward of
        every micro-batch of the step (the accumulation), then clipping, the optimizer and the LR
        schedule step as Lightning steps them under the other layouts."""
        loss = self.pipeline.step(inputs, targets)
        self._tokens_since += targets.numel() * data_parallel_rank_and_size(self.trainer)[1]
        self.record_step_loss(loss)
        optimizer = self.optimizers()
        self.configure_gradient_clipping(optimizer)
        optimizer.step()
        optimizer.zero_grad()
        self.lr_schedulers().step()
        return loss

    def record_step_loss(self, loss: torch.Tensor) -> None:
        """Stages with their own training_step call this: train/loss is logged per optimizer step."""
        self._step_losses.append(loss.detach())

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # FSDP: reduce-scatter gradients after the last micro-batch of a step only, unless the
        # plan found no room for the unsharded gradients in between.
        if self.trainer.accumulate_grad_batches > 1 and not self.plan.reduce_every_microbatch:
            set_gradient_sync(self, self._is_last_microbatch(batch_idx))

    def _is_last_microbatch(self, batch_idx: int) -> bool:
        return (batch_idx + 1) % self.trainer.accumulate_grad_batches == 0

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._is_last_microbatch(batch_idx):
            return
        # train/loss as torchtitan logs it: the mean over every micro-batch of the step and every
        # rank (TP ranks hold equal values, so the mean over all ranks is the data-parallel mean).
        loss = self.trainer.strategy.reduce(torch.stack(self._step_losses).mean(), reduce_op="mean")
        self._step_losses = []
        if not torch.isfinite(loss):
            raise Diverged(self.global_step, "train/loss", float(loss))
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        now = time.perf_counter()
        logging = self.global_step % self.cfg.trainer.log_every == 0
        if logging:  # the same values whether or not the run resumed just before this step
            self.log("tokens", float(self.global_step * self.plan.tokens_per_step), on_step=True, on_epoch=False)
            # Per-source tokens drawn by the data mixture so far, and the realized shares.
            source_tokens = getattr(getattr(self.trainer, "datamodule", None), "source_tokens", None)
            if source_tokens is not None:
                drawn = source_tokens(self.global_step * self.plan.global_batch_size)
                for name, n in drawn.items():
                    self.log(f"data/tokens_{name}", float(n), on_step=True, on_epoch=False)
                    self.log(f"data/share_{name}", n / max(1, sum(drawn.values())), on_step=True, on_epoch=False)
        if logging and self._last_step_time is not None:  # timing: from the second step of a process on
            tokens_per_s = self._tokens_since / (now - self._last_step_time)
            self.log("throughput/tokens_per_s", tokens_per_s, prog_bar=True, on_step=True, on_epoch=False)
        if self._last_step_time is None or logging:
            self._last_step_time, self._tokens_since = now, 0

    def on_after_backward(self) -> None:
        if self.context_parallel is not None:  # ring attention ran the forward and the backward
            self.context_parallel.leave()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss = self.validation_loss(batch)
        if self.context_parallel is not None:
            self.context_parallel.leave()
        self.log("val/loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)

    def validation_loss(self, batch: Any) -> torch.Tensor:
        return self.loss(batch)[0]

    def on_validation_epoch_end(self) -> None:
        self.last_val_step = self.global_step

    def configure_optimizers(self):
        # fp16's grad scaler needs unscaled gradients to clip: no fused kernel there.
        fusable = self.cfg.parallelism.precision != "16-mixed"
        # The whole module: the network plus any heads a stage adds (frozen parts are skipped).
        optimizer = build_optimizer(self, self.cfg.optimizer, self.device.type if fusable else "none")
        total = self.plan.steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_multiplier(step, total, self.cfg.optimizer)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's AMP plugin refuses to clip for fused optimizers because of fp16's grad
        # scaler; bf16 and fp32 have no scaler, so clip here (and log the norm) for those.
        if self.cfg.parallelism.precision == "16-mixed":
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        max_norm = self.cfg.optimizer.grad_clip or float("inf")
        norm = clip_grad_norm([p for p in self.parameters() if p.requires_grad], max_norm,
                              self.pipeline.group if self.pipeline is not None else None)
        if not torch.isfinite(norm):  # before the optimizer step: the weights are still the last good ones
            raise Diverged(self.global_step + 1, "train/grad_norm", float(norm))
        if self.global_step % self.cfg.trainer.log_every == 0:
            self.log("train/grad_norm", norm, on_step=True, on_epoch=False)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.global_step % self.cfg.trainer.log_every == 0:
            self.log("lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["llmexp"] = self.checkpoint_meta
        if self.device_mesh is None and self._trainer is not None:  # plain optimizer ids: name them for fsdp/tp
            checkpoint[PARAM_NAMES] = optimizer_param_names(self, self.trainer.optimizers)
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # resumed under another dp degree, or across pipeline and other layouts
        rescale_batch_progress(checkpoint, self.plan.loader_batches_per_step, manual=not self.automatic_optimization)
        rng = checkpoint.get("rng")
        if not rng:
            return
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(_numpy_state_from_plain(rng["numpy"]))
        random.setstate(_to_tuples(rng["python"]))


def _numpy_state_to_plain(state: tuple) -> list:
    # Plain lists, so checkpoints load with torch.load(weights_only=True).
    name, keys, pos, has_gauss, cached = state
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _numpy_state_from_plain(state: list) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
