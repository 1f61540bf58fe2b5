"""RLHF: on-policy rollouts scored by a reward, then clipped policy-gradient updates.

Inside Lightning's ordinary loop: every `stage.ppo_epochs` optimizer steps, a training step
samples `group_size` responses per prompt of its batch (KV-cache generation) and scores them;
each step then updates on that rollout. So checkpoints, clipping, schedules and logging are
the shared ones, and `trainer.max_steps` counts updates.

- algorithm=ppo: per-token rewards = -kl_coef * log(pi_old/pi_ref) + the score at the last
  token; a value model (the network + a scalar head) gives GAE advantages; clipped policy and
  value losses (Schulman et al. 2017; Ouyang et al. 2022).
- algorithm=grpo: advantages are each sample's score standardised within its prompt's group;
  no value model; the KL to the reference is a term of the loss (Shao et al. 2024).
- reward: callable ("module:function" (prompt, response) -> float, rule-based), model (a
  stage=reward run), or judge (a language model asked whether the answer is right: RLAIF).
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch

from llmexp.config.errors import ConfigError
from llmexp.config.schema import Config
from llmexp.data.chat import IGNORE, Skipped, messages_of, render, stop_id
from llmexp.data.sources import DataError
from llmexp.generate import generate
from llmexp.models import Llama
from llmexp.models.heads import ScalarModel
from llmexp.plan import seq_len_of
from llmexp.stages.posttrain import (
    PostTrainData, PostTrainModule, check_same_tokenizer, init_tokenizer, load_trained, masked_mean,
    records_fingerprint, require_examples, saved_shape, split_records, stage_records, template_of, token_logps,
)


def load_reward_fn(spec: str) -> Callable[[str, str], float]:
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError("stage.reward_fn", spec, f"cannot import it: {err}") from None
    if not callable(fn):
        raise ConfigError("stage.reward_fn", spec, "is not callable")
    return fn


def prepare_rlhf(cfg: Config) -> PostTrainData:
    s = cfg.stage
    tokenizer = init_tokenizer(cfg.init_from)
    template = template_of(cfg, tokenizer)
    if s.reward == "callable":
        load_reward_fn(s.reward_fn)  # fail before training, not at the first rollout
    else:
        key = "reward_model" if s.reward == "model" else "judge_model"
        check_same_tokenizer(tokenizer, init_tokenizer(getattr(s, key), f"stage.{key}"), f"stage.{key}", getattr(s, key))
    records = stage_records(s, "prompts")
    room = seq_len_of(cfg) - s.max_new_tokens
    skipped = Skipped()

    def prompts(part):
        out = []
        for where, record in part:
            messages = messages_of(record, where, s.messages_field, s.prompt_field, None)
            while messages and messages[-1]["role"] == "assistant":  # a chat record: prompt = up to the last reply
                messages = messages[:-1]
            if not messages or not messages[-1]["content"].strip():
                skipped.add("with an empty prompt")
                continue
            ids = render(tokenizer, template, messages, generation_prompt=True, where=where).ids
            if len(ids) > room:
                if s.truncation == "error":
                    raise DataError(f"{where}: prompt of {len(ids)} tokens leaves no room for stage.max_new_tokens="
                                    f"{s.max_new_tokens} in trainer.seq_len={seq_len_of(cfg)}: set stage.truncation")
                if s.truncation == "drop":
                    skipped.add(f"prompts longer than {room} tokens")
                    continue
                ids = ids[-room:] if s.truncation == "left" else ids[:room]
            out.append({"ids": ids, "prompt": messages[-1]["content"]})
        return out

    train_records, val_records = split_records(records, s.val_fraction, s.split_seed)
    train, val = prompts(train_records), prompts(val_records)[: s.val_prompts]
    require_examples(train, val, "prompts", skipped)
    return PostTrainData(tokenizer, train, val, list, records_fingerprint(records), "prompts", skipped)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimation over each row's response positions (mask)."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    width = rewards.shape[1]
    for t in reversed(range(width)):
        next_mask = mask[:, t + 1] if t + 1 < width else torch.zeros_like(last)
        next_value = values[:, t + 1] * next_mask if t + 1 < width else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * next_mask * last) * mask[:, t]
        advantages[:, t] = last
    return advantages


class RLHFModule(PostTrainModule):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.value = None
        self._rollout = None
        self._updates_left = 0
        self._tokenizer = None

    def configure_model(self) -> None:
        super().configure_model()
        if self.cfg.stage.algorithm == "ppo" and self.value is None:
            # The value model starts from the policy's weights with a zero head.
            self.value = load_trained(ScalarModel(Llama(self.shape)), self.cfg.init_from)

    # ---- rewards ----
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = init_tokenizer(self.cfg.init_from)
        return self._tokenizer

    @torch.no_grad()
    def score(self, prompts: list[dict], responses: list[list[int]], texts: list[str]) -> torch.Tensor:
        s = self.cfg.stage
        if s.reward == "callable":
            fn = load_reward_fn(s.reward_fn)
            return torch.tensor([float(fn(p["prompt"], t)) for p, t in zip(prompts, texts)], device=self.device)
        if s.reward == "model":
            model = self.frozen("reward", lambda: load_trained(ScalarModel(Llama(saved_shape(s.reward_model))),
                                                               s.reward_model, "stage.reward_model"))
            rows = [p["ids"] + r for p, r in zip(prompts, responses)]
            tokens, last = self._pad(rows)
            return model.score(tokens, last).float()
        judge = self.frozen("judge", lambda: load_trained(Llama(saved_shape(s.judge_model)), s.judge_model,
                                                          "stage.judge_model"))
        yes, no = self.tokenizer.encode(" yes")[0], self.tokenizer.encode(" no")[0]
        rows = [self.tokenizer.encode(s.judge_template.format(prompt=p["prompt"], response=t))[-(judge.shape.max_seq_len - 1):]
                for p, t in zip(prompts, texts)]
        tokens, last = self._pad(rows)
        logps = torch.log_softmax(judge(tokens).float(), -1)[torch.arange(len(rows)), last]
        return logps[:, yes] - logps[:, no]

    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.full((len(rows), max(map(len, rows))), self.tokenizer.eot_id, dtype=torch.long, device=self.device)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.tensor(r, device=self.device)
        return tokens, torch.tensor([len(r) - 1 for r in rows], device=self.device)

    # ---- rollouts ----
    @torch.no_grad()
    def sample(self, prompts: list[dict], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        s = self.cfg.stage
        stop = stop_id(self.tokenizer, template_of(self.cfg, self.tokenizer))
        was_training = self.model.training
        self.model.eval()
        outs = generate(self.model, [p["ids"] for p in prompts], s.max_new_tokens,
                        temperature=s.temperature, top_k=s.top_k, stop_token_ids=[stop], generator=generator)
        self.model.train(was_training)
        texts = [self.tokenizer.decode([t for t in o if t != stop]) for o in outs]
        scores = self.score(prompts, outs, texts)
        tokens, _ = self._pad([p["ids"] + o for p, o in zip(prompts, outs)])
        labels = torch.full_like(tokens, IGNORE)
        for i, (p, o) in enumerate(zip(prompts, outs)):  # position j predicts token j+1
            labels[i, len(p["ids"]) - 1 : len(p["ids"]) + len(o) - 1] = tokens[i, len(p["ids"]) : len(p["ids"]) + len(o)]
        lengths = torch.tensor([len(o) for o in outs], dtype=torch.float, device=self.device)
        return {"tokens": tokens, "labels": labels, "mask": (labels != IGNORE).float(), "scores": scores,
                "lengths": lengths, "texts": texts}

    @torch.no_grad()
    def collect(self, prompts: list[dict]) -> dict[str, torch.Tensor]:
        s = self.cfg.stage
        # Sampling draws from its own generator, seeded by step and rank: a resumed run samples
        # exactly what an uninterrupted one does, whatever else consumed the global RNG.
        seed = (self.cfg.trainer.seed * 1_000_003 + self.global_step) * 997 + self.global_rank
        generator = torch.Generator(self.device).manual_seed(seed)
        batch = self.sample([p for p in prompts for _ in range(s.group_size)], generator)
        tokens, labels, mask = batch["tokens"], batch["labels"], batch["mask"]
        reference = self.frozen("reference", lambda: load_trained(Llama(self.shape), self.cfg.init_from))
        batch["old_logps"] = token_logps(self.model(tokens), labels)
        batch["ref_logps"] = token_logps(reference(tokens), labels)
        scores = batch["scores"]
        if s.algorithm == "grpo":
            groups = scores.view(-1, s.group_size)
            adv = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)
            batch["advantages"] = adv.flatten()[:, None] * mask
            return batch
        values = self.value(tokens) * mask
        rewards = -s.kl_coef * (batch["old_logps"] - batch["ref_logps"]) * mask
        last = (mask.cumsum(1) * mask).argmax(1)  # each row's final response position
        rewards[torch.arange(len(scores)), last] += scores
        advantages = gae(rewards, values, mask, s.gamma, s.gae_lambda)
        batch["returns"] = advantages + values
        batch["old_values"] = values
        mean, std = masked_mean(advantages, mask), (masked_mean((advantages - masked_mean(advantages, mask)) ** 2, mask)).sqrt()
        batch["advantages"] = (advantages - mean) / (std + 1e-8) * mask
        return batch

    def policy_loss(self, r: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.cfg.stage
        mask, adv = r["mask"], r["advantages"]
        logps = token_logps(self.model(r["tokens"]), r["labels"])
        ratio = torch.exp((logps - r["old_logps"]) * mask)
        clipped = ratio.clamp(1 - s.clip, 1 + s.clip)
        stats = {"clipfrac": masked_mean(((ratio - 1).abs() > s.clip).float(), mask),
                 "kl": masked_mean(r["old_logps"] - r["ref_logps"], mask)}
        if s.algorithm == "grpo":
            log_ratio_ref = (r["ref_logps"] - logps) * mask
            kl = torch.exp(log_ratio_ref) - log_ratio_ref - 1  # k3: unbiased, non-negative
            per_token = -torch.min(ratio * adv, clipped * adv) + s.kl_coef * kl
            loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
            return loss, stats
        pg = masked_mean(torch.max(-adv * ratio, -adv * clipped), mask)
        values = self.value(r["tokens"])
        v_clipped = r["old_values"] + (values - r["old_values"]).clamp(-s.value_clip, s.value_clip)
        vf = 0.5 * masked_mean(torch.max((values - r["returns"]) ** 2, (v_clipped - r["returns"]) ** 2), mask)
        stats.update(policy_loss=pg.detach(), value_loss=vf.detach())
        return pg + s.vf_coef * vf, stats

    def loss(self, batch: list[dict]) -> tuple[torch.Tensor, int]:
        """Rollout-then-update: a fresh rollout every ppo_epochs steps, one update per step."""
        if self._updates_left == 0:
            self._rollout = self.collect(batch)
            self._updates_left = self.cfg.stage.ppo_epochs
        self._updates_left -= 1
        loss, stats = self.policy_loss(self._rollout)
        r = self._rollout
        stats.update(reward=r["scores"].mean(), response_len=r["lengths"].mean())
        self.log_metrics("train", stats)
        return loss, int(r["mask"].sum())

    def validation_step(self, batch: list[dict], batch_idx: int) -> None:
        """Mean reward of responses sampled as in training (group_size per held-out prompt,
        fixed seed: every validation draws the same way); val/loss is its negative, so
        best.ckpt keeps the policy with the highest reward."""
        generator = torch.Generator(self.device).manual_seed(self.cfg.trainer.seed + batch_idx)
        prompts = [p for p in batch for _ in range(self.cfg.stage.group_size)]
        reward = self.sample(prompts, generator)["scores"].mean()
        self.log("val/reward", reward, on_step=False, on_epoch=True, batch_size=len(batch))
        self.log("val/loss", -reward, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(batch))
