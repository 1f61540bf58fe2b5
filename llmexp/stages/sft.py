"""Supervised fine-tuning on chat records: next-token loss on the assistant's tokens (or all),
records packed several per sequence with a block-diagonal mask, or padded one per sequence."""
from __future__ import annotations

import torch

from llmexp.config.schema import Config
from llmexp.data.chat import IGNORE, Skipped, block_causal_mask, collate_rows, pad_id_of, sft_examples, sft_rows
from llmexp.plan import seq_len_of
from llmexp.stages.posttrain import (
    PostTrainData, PostTrainModule, cross_entropy_sum, init_tokenizer, records_fingerprint, require_examples,
    split_records, stage_records, template_of,
)


def prepare_sft(cfg: Config) -> PostTrainData:
    s = cfg.stage
    tokenizer = init_tokenizer(cfg.init_from)
    records = stage_records(s, "sft")
    train_records, val_records = split_records(records, s.val_fraction, s.split_seed)
    seq, pad, skipped = seq_len_of(cfg), pad_id_of(tokenizer), Skipped()
    keys = dict(messages_field=s.messages_field, prompt_field=s.prompt_field, response_field=s.response_field,
                loss_on=s.loss_on, truncation=s.truncation, skipped=skipped)
    train = sft_examples(train_records, tokenizer, template_of(cfg, tokenizer), seq, **keys)
    val = sft_examples(val_records, tokenizer, template_of(cfg, tokenizer), seq, **keys)
    require_examples(train, val, "records", skipped)
    return PostTrainData(tokenizer, sft_rows(train, seq, pad, s.packing), sft_rows(val, seq, pad, s.packing),
                         collate_rows, records_fingerprint(records), "rows", skipped)


class SFTModule(PostTrainModule):
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        if self.cfg.stage.packing:  # documents restart their positions and never see each other
            logits = self(batch["tokens"], positions=batch["positions"], mask=block_causal_mask(batch["doc"]))
        else:  # one record per row, right-padded: plain causal attention hides the padding
            logits = self(batch["tokens"])
        labels = batch["labels"]
        n = (labels != IGNORE).sum()
        return cross_entropy_sum(logits, labels) / n.clamp(min=1), int(batch["tokens"].numel())
