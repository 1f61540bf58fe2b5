"""Offline preference optimisation on (prompt, chosen, rejected) pairs with TRL's losses
(`stage.loss_type`, llmexp/stages/losses.py): DPO's sigmoid (cDPO with label_smoothing),
hinge, ipo, robust against a frozen reference (the starting model, records' precomputed
log-probs, or none: reference_free); simpo and orpo without a reference; kto treating each
chosen reply as desirable and each rejected one as undesirable (TRL's unpairing of a paired
dataset), its KL reference point from mismatched prompt/reply rows.
Metrics, in their units: rewards/{chosen,rejected,margin} (beta-scaled log-ratios), rewards/accuracy."""
from __future__ import annotations

import torch

from llmexp.config.schema import Config
from llmexp.data.chat import IGNORE
from llmexp.models import Llama
from llmexp.parallel.parallelize import data_parallel_rank_and_size
from llmexp.stages.losses import (
    REFERENCE_FREE_LOSS_TYPES, dpo_losses, kto_kl, kto_losses, orpo_losses, simpo_losses,
)
from llmexp.stages.posttrain import (
    PostTrainData, PostTrainModule, generate_replies, gold_scores, load_trained, template_of,
    token_logps, win_rate,
)
from llmexp.stages.reward import prepare_pairs, preference_metrics


def prepare_dpo(cfg: Config) -> PostTrainData:
    s = cfg.stage
    ref_fields = (s.ref_chosen_field, s.ref_rejected_field) if s.reference == "precomputed" else None
    return prepare_pairs(cfg, ref_fields, kl_rows=s.loss_type == "kto")


def needs_reference(stage) -> bool:
    return stage.loss_type not in REFERENCE_FREE_LOSS_TYPES and not stage.reference_free


def preference_loss(policy, batch: dict, stage, reference=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, chosen rewards, rejected rewards) of one batch of pairs under `stage.loss_type`.
    `reference`: the frozen reference network (None: reference=precomputed or not needed)."""
    tokens, labels = batch["tokens"], batch["labels"]
    logits = policy(tokens)
    per_token = token_logps(logits, labels)
    lengths = (labels != IGNORE).sum(-1).float()
    logps = per_token.sum(-1)
    kind = stage.loss_type
    if kind == "simpo":
        losses, chosen, rejected = simpo_losses(logps / lengths.clamp(min=1), stage.beta, stage.simpo_gamma,
                                                stage.label_smoothing)
        return losses.mean(), chosen, rejected
    if kind == "orpo":
        losses, chosen, rejected = orpo_losses(logps / lengths.clamp(min=1), stage.beta)
        full = batch["full_labels"][: tokens.shape[0] // 2]  # the chosen rows' every next token
        nll = -token_logps(logits[: tokens.shape[0] // 2], full).sum() / (full != IGNORE).sum().clamp(min=1)
        return nll + losses.mean(), chosen, rejected
    ref_logps = reference_logps(batch, stage, reference, tokens, labels)
    if kind == "kto":
        with torch.no_grad():
            kl_logps = token_logps(policy(batch["kl_tokens"]), batch["kl_labels"]).sum(-1)
            ref_kl = (token_logps(reference(batch["kl_tokens"]), batch["kl_labels"]).sum(-1)
                      if reference is not None else torch.zeros_like(kl_logps))
        desirable = torch.arange(tokens.shape[0], device=tokens.device) < tokens.shape[0] // 2
        losses, chosen, rejected = kto_losses(logps, ref_logps, desirable, kto_kl(kl_logps, ref_kl), stage.beta,
                                              stage.desirable_weight, stage.undesirable_weight)
        return losses.mean(), chosen, rejected
    losses, chosen, rejected = dpo_losses(logps, ref_logps, lengths, stage.beta, kind, stage.label_smoothing)
    return losses.mean(), chosen, rejected


def reference_logps(batch, stage, reference, tokens, labels) -> torch.Tensor:
    if stage.reference_free:
        return torch.zeros(tokens.shape[0], device=tokens.device)
    if stage.reference == "precomputed":
        return batch["ref_logps"].float()
    with torch.no_grad():
        return token_logps(reference(tokens), labels).sum(-1)


class DPOModule(PostTrainModule):
    val_loss_meaning = "preference loss (stage.loss_type) of the held-out pairs; rewards/* are beta-scaled log-ratios"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._val: dict[str, list[torch.Tensor]] = {}

    def reference(self):
        s = self.cfg.stage
        if not needs_reference(s) or s.reference == "precomputed":
            return None
        return self.frozen("reference", lambda: load_trained(Llama(self.shape), self.cfg.init_from))

    def step(self, batch):
        return preference_loss(self.model, batch, self.cfg.stage, self.reference())

    def loss(self, batch) -> tuple[torch.Tensor, int]:
        return self.step(batch)[0], int((batch["labels"] != IGNORE).sum())

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, chosen, rejected = self.step(batch)
        self._tokens_since += int(batch["tokens"].numel()) * data_parallel_rank_and_size(self.trainer)[1]
        self.record_step_loss(loss)
        self.log_metrics("train", {f"rewards/{k}": v for k, v in preference_metrics(chosen, rejected).items()})
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, chosen, rejected = self.step(batch)
        # batch_size: pairs, so the epoch mean weighs a short last batch right (and Lightning need not guess)
        self.log("val/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(chosen))
        metrics = preference_metrics(chosen, rejected)
        self.log_metrics("val", {f"rewards/{k}": v for k, v in metrics.items()}, batch_size=len(chosen))
        self._val.setdefault("rewards/margin", []).append((chosen - rejected).detach().float())
        if self.cfg.stage.eval_fn:
            self.held_out_gold(batch["prompts"])

    @torch.no_grad()
    def held_out_gold(self, prompts: list[dict]) -> None:
        """Greedy replies to the held-out prompts scored by stage.eval_fn, and the win rate
        against the reference's greedy replies on that gold metric."""
        s, ids, template = self.cfg.stage, [p["ids"] for p in prompts], template_of(self.cfg, self.tokenizer)
        mine = generate_replies(self.model, self.tokenizer, template, ids, s.eval_max_new_tokens)[1]
        gold = gold_scores(s, prompts, mine, self.device)
        self._val.setdefault("gold", []).append(gold)
        reference = self.reference()
        if reference is not None:
            theirs = generate_replies(reference, self.tokenizer, template, ids, s.eval_max_new_tokens)[1]
            self._val.setdefault("win_rate", []).append(win_rate(gold, gold_scores(s, prompts, theirs, self.device)))

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        means = {k: float(self.all_mean(torch.cat(v).mean())) for k, v in self._val.items()}
        self._val = {}
        if means:
            self.record_held_out(means, "rewards/margin", already_logged=("rewards/margin",))
