"""Direct preference optimisation against a frozen reference (the starting model, or
log-probs precomputed in the records): DPO's sigmoid loss or IPO's squared loss, beta a key.
Metrics: implicit rewards beta*log(pi/pi_ref) of chosen and rejected, their margin, accuracy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from llmexp.config.schema import Config
from llmexp.data.chat import IGNORE
from llmexp.models import Llama
from llmexp.stages.posttrain import PostTrainData, PostTrainModule, load_trained, sequence_logps
from llmexp.stages.reward import prepare_pairs, preference_metrics


def prepare_dpo(cfg: Config) -> PostTrainData:
    s = cfg.stage
    return prepare_pairs(cfg, (s.ref_chosen_field, s.ref_rejected_field) if s.reference == "precomputed" else None)


def preference_loss(pi: torch.Tensor, ref: torch.Tensor, beta: float, kind: str):
    """pi, ref: (2B,) summed log-probs, chosen rows first. Returns (loss, chosen/rejected rewards)."""
    half = pi.shape[0] // 2
    pi_c, pi_r, ref_c, ref_r = pi[:half], pi[half:], ref[:half], ref[half:]
    logits = (pi_c - pi_r) - (ref_c - ref_r)
    if kind == "ipo":  # IPO (Azar et al. 2023): regress the log-ratio gap to 1/(2 beta)
        loss = ((logits - 1 / (2 * beta)) ** 2).mean()
    else:  # DPO (Rafailov et al. 2023)
        loss = -F.logsigmoid(beta * logits).mean()
    return loss, beta * (pi_c - ref_c), beta * (pi_r - ref_r)


class DPOModule(PostTrainModule):
    def reference_logps(self, batch) -> torch.Tensor:
        if self.cfg.stage.reference == "precomputed":
            return batch["ref_logps"].float()
        reference = self.frozen("reference", lambda: load_trained(Llama(self.shape), self.cfg.init_from))
        with torch.no_grad():
            return sequence_logps(reference, batch["tokens"], batch["labels"])

    def step(self, batch):
        pi = sequence_logps(self.model, batch["tokens"], batch["labels"])
        return preference_loss(pi, self.reference_logps(batch), self.cfg.stage.beta, self.cfg.stage.loss)

    def loss(self, batch) -> tuple[torch.Tensor, int]:
        return self.step(batch)[0], int((batch["labels"] != IGNORE).sum())

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, chosen, rejected = self.step(batch)
        self._tokens_since += int(batch["tokens"].numel()) * self.trainer.world_size
        self.record_step_loss(loss)
        self.log_metrics("train", {f"rewards/{k}": v for k, v in preference_metrics(chosen, rejected).items()})
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, chosen, rejected = self.step(batch)
        self.log("val/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        self.log_metrics("val", {f"rewards/{k}": v for k, v in preference_metrics(chosen, rejected).items()})
