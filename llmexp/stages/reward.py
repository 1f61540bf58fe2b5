"""Reward model: the network plus a scalar head, trained on preference pairs with the
Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)); accuracy and margin logged."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from llmexp.config.schema import Config
from llmexp.data.chat import Skipped, pad_id_of
from llmexp.data.preference import collate_pairs, preference_pairs
from llmexp.models import Llama
from llmexp.models.heads import ScalarModel
from llmexp.parallel.parallelize import data_parallel_rank_and_size
from llmexp.plan import layout_of, seq_len_of
from llmexp.stages.posttrain import (
    PostTrainData, PostTrainModule, init_tokenizer, load_trained, records_fingerprint, require_examples,
    split_records, stage_records, template_of,
)


def prepare_pairs(cfg: Config, ref_fields=None, kl_rows: bool = False) -> PostTrainData:
    """Preference pairs for reward and dpo (`kl_rows`: KTO's mismatched rows too)."""
    s = cfg.stage
    tokenizer = init_tokenizer(cfg.init_from)
    records = stage_records(s, "preference")
    train_records, val_records = split_records(records, s.val_fraction, s.split_seed)
    skipped = Skipped()
    keys = dict(messages_field=s.messages_field, prompt_field=s.prompt_field, chosen_field=s.chosen_field,
                rejected_field=s.rejected_field, truncation=s.truncation, skipped=skipped, ref_fields=ref_fields)
    train = preference_pairs(train_records, tokenizer, template_of(cfg, tokenizer), seq_len_of(cfg), **keys)
    val = preference_pairs(val_records, tokenizer, template_of(cfg, tokenizer), seq_len_of(cfg), **keys)
    require_examples(train, val, "pairs", skipped)
    pad, multiple = pad_id_of(tokenizer), layout_of(cfg).tp
    return PostTrainData(tokenizer, train, val, lambda pairs: collate_pairs(pairs, pad, kl_rows, multiple),
                         records_fingerprint(records), "pairs", skipped)


def preference_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, torch.Tensor]:
    margin = (chosen - rejected).detach()
    return {"accuracy": (margin > 0).float().mean(), "margin": margin.mean(),
            "chosen": chosen.detach().mean(), "rejected": rejected.detach().mean()}


class RewardModule(PostTrainModule):
    val_loss_meaning = "Bradley-Terry loss -log sigmoid(r_chosen - r_rejected) of the held-out pairs"

    def build_network(self) -> ScalarModel:
        return load_trained(ScalarModel(Llama(self.shape)), self.cfg.init_from)

    def forward_pairs(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.model.score(batch["tokens"], batch["last"]).float()  # the loss in fp32 under any precision
        half = scores.shape[0] // 2
        return scores[:half], scores[half:]

    def loss(self, batch) -> tuple[torch.Tensor, int]:
        chosen, rejected = self.forward_pairs(batch)
        return -F.logsigmoid(chosen - rejected).mean(), int(batch["tokens"].numel())

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        chosen, rejected = self.forward_pairs(batch)
        loss = -F.logsigmoid(chosen - rejected).mean()
        self._tokens_since += int(batch["tokens"].numel()) * data_parallel_rank_and_size(self.trainer)[1]
        self.record_step_loss(loss)
        self.log_metrics("train", preference_metrics(chosen, rejected))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        chosen, rejected = self.forward_pairs(batch)
        pairs = len(chosen)  # the epoch mean weighs a short last batch right (and Lightning need not guess)
        self.log("val/loss", -F.logsigmoid(chosen - rejected).mean(), prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=pairs)
        self.log_metrics("val", preference_metrics(chosen, rejected), batch_size=pairs)
