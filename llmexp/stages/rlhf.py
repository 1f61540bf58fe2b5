"""RLHF: on-policy rollouts scored by rewards, then clipped policy-gradient updates.

Inside Lightning's ordinary loop: every `stage.ppo_epochs` optimizer steps, a training step
samples `group_size` responses per prompt of its batch (KV-cache generation) and scores them;
each step then updates on that rollout. So checkpoints, clipping, schedules and logging are
the shared ones, and `trainer.max_steps` counts updates. Losses: llmexp/stages/losses.py (TRL's).

- algorithm=ppo: per-token rewards = -kl_coef * log(pi_old/pi_ref) + the score at the last
  token; a value model (the network + a scalar head) gives GAE advantages; clipped policy and
  value losses (Schulman et al. 2017; Ouyang et al. 2022).
- algorithm=grpo: advantages standardised within each prompt's group (scale_rewards), no value
  model, the k3 KL to the reference a term of the loss, aggregated by loss_type (Shao et al. 2024).
- algorithm=rloo: REINFORCE leave-one-out on KL-penalised rewards, a sequence-level clipped
  surrogate (Ahmadian et al. 2024).
- rewards: llmexp/stages/rewards.py (weighted functions, reward models, judges); kl_target makes
  the KL coefficient adaptive.
- validation, on held-out prompts: reward per function and total, the gold metric (eval_fn), KL
  to the reference per token, win rate against the reference's samples; a warning (and
  posttrain.json) when the reward rises while the gold metric falls, or KL passes kl_budget.
"""
from __future__ import annotations

import torch

from llmexp.config.schema import Config
from llmexp.data.chat import IGNORE, Skipped, messages_of, render
from llmexp.data.sources import DataError
from llmexp.models import Llama
from llmexp.models.heads import ScalarModel
from llmexp.parallel.parallelize import data_parallel_rank_and_size, parallelize
from llmexp.plan import seq_len_of
from llmexp.stages.losses import clipped_policy_loss, group_advantages, rloo_advantages, rloo_policy_loss
from llmexp.stages.posttrain import (
    PostTrainData, PostTrainModule, check_same_tokenizer, generate_replies, gold_scores, init_tokenizer, load_trained,
    masked_mean, records_fingerprint, require_examples, saved_shape, split_records, stage_records, template_of,
    token_logps, win_rate,
)
from llmexp.stages.rewards import AdaptiveKLController, call_text_fn, load_callable, rewards_of, weighted_total


def prepare_rlhf(cfg: Config) -> PostTrainData:
    s = cfg.stage
    tokenizer = init_tokenizer(cfg.init_from)
    template = template_of(cfg, tokenizer)
    for r in rewards_of(s):  # fail before training, not at the first rollout
        if r.kind == "callable":
            load_callable(r.source, r.key)
        else:
            check_same_tokenizer(tokenizer, init_tokenizer(r.source, r.key), r.key, r.source)
    if s.eval_fn:
        load_callable(s.eval_fn, "stage.eval_fn")
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
            out.append({"ids": ids, "prompt": messages[-1]["content"], "messages": messages})
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
    val_loss_meaning = "negative gold metric (stage.eval_fn), else negative mean reward, of held-out samples"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.cfg.stage
        self.value = None
        self._rollout = None
        self._updates_left = 0
        self.rewards = rewards_of(s)
        self.kl_control = AdaptiveKLController(s.kl_coef, s.kl_target, s.kl_horizon) if s.kl_target else None
        self._val: dict[str, list[torch.Tensor]] = {}

    def configure_model(self) -> None:
        super().configure_model()
        if self.cfg.stage.algorithm == "ppo" and self.value is None:
            # The value model starts from the policy's weights with a zero head, laid out like the
            # policy (FSDP shards and reduces its gradients over dp, TP splits it by its plan).
            self.value = parallelize(load_trained(ScalarModel(Llama(self.shape)), self.cfg.init_from),
                                     self.cfg.parallelism, self.device_mesh)

    @property
    def kl_coef(self) -> float:
        return self.kl_control.value if self.kl_control else self.cfg.stage.kl_coef

    # ---- rewards ----
    def reference(self) -> Llama:
        return self.frozen("reference", lambda: load_trained(Llama(self.shape), self.cfg.init_from))

    @torch.no_grad()
    def score(self, prompts: list[dict], responses: list[list[int]], texts: list[str]) -> dict[str, torch.Tensor]:
        """Each reward function's scores of the samples, by name."""
        return {r.name: self.score_one(r, prompts, responses, texts).float() for r in self.rewards}

    def score_one(self, r, prompts, responses, texts) -> torch.Tensor:
        if r.kind == "callable":
            fn = load_callable(r.source, r.key)
            return torch.tensor([call_text_fn(fn, p, t) for p, t in zip(prompts, texts)], device=self.device)
        if r.kind == "model":
            model = self.frozen(f"reward:{r.name}", lambda: load_trained(
                ScalarModel(Llama(saved_shape(r.source))), r.source, r.key))
            tokens, last = self._pad([p["ids"] + o for p, o in zip(prompts, responses)])
            return model.score(tokens, last)
        judge = self.frozen(f"judge:{r.name}", lambda: load_trained(Llama(saved_shape(r.source)), r.source, r.key))
        yes, no = self.tokenizer.encode(" yes")[0], self.tokenizer.encode(" no")[0]
        template = self.cfg.stage.judge_template
        rows = [self.tokenizer.encode(template.format(prompt=p["prompt"], response=t))[-(judge.shape.max_seq_len - 1):]
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
    def sample(self, prompts: list[dict], generator: torch.Generator | None = None, model=None) -> dict:
        """`model`'s (default: the policy's) samples for `prompts`, scored by every reward."""
        s = self.cfg.stage
        outs, texts = generate_replies(self.model if model is None else model, self.tokenizer, template_of(self.cfg, self.tokenizer),
                                       [p["ids"] for p in prompts], s.max_new_tokens, s.temperature, s.top_k, s.top_p,
                                       generator)
        per_function = self.score(prompts, outs, texts)
        tokens, _ = self._pad([p["ids"] + o for p, o in zip(prompts, outs)])
        labels = torch.full_like(tokens, IGNORE)
        for i, (p, o) in enumerate(zip(prompts, outs)):  # position j predicts token j+1
            labels[i, len(p["ids"]) - 1 : len(p["ids"]) + len(o) - 1] = tokens[i, len(p["ids"]) : len(p["ids"]) + len(o)]
        lengths = torch.tensor([len(o) for o in outs], dtype=torch.float, device=self.device)
        return {"tokens": tokens, "labels": labels, "mask": (labels != IGNORE).float(),
                "per_function": per_function, "scores": weighted_total(per_function, self.rewards),
                "lengths": lengths, "texts": texts}

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(seed)

    @torch.no_grad()
    def collect(self, prompts: list[dict]) -> dict[str, torch.Tensor]:
        s = self.cfg.stage
        # Sampling draws from its own generator, seeded by step and data-parallel rank (the ranks
        # of a tensor-parallel group sample alike): a resumed run samples what an uninterrupted one does.
        dp_rank = data_parallel_rank_and_size(self.trainer)[0]
        seed = (self.cfg.trainer.seed * 1_000_003 + self.global_step) * 997 + dp_rank
        batch = self.sample([p for p in prompts for _ in range(s.group_size)], self._generator(seed))
        tokens, labels, mask = batch["tokens"], batch["labels"], batch["mask"]
        batch["old_logps"] = token_logps(self.model(tokens), labels)
        batch["ref_logps"] = token_logps(self.reference()(tokens), labels)
        sequence_kl = ((batch["old_logps"] - batch["ref_logps"]) * mask).sum(1)
        batch["kl_coef"] = self.kl_coef
        if self.kl_control:  # the coefficient for the next rollout
            self.kl_control.update(float(self.all_mean(sequence_kl.mean())), len(sequence_kl))
        scores = batch["scores"]
        if s.algorithm == "grpo":
            batch["advantages"] = group_advantages(scores, s.group_size, s.scale_rewards)
            return batch
        if s.algorithm == "rloo":
            batch["advantages"] = rloo_advantages(scores - batch["kl_coef"] * sequence_kl, s.group_size)
            return batch
        values = self.value(tokens) * mask
        rewards = -batch["kl_coef"] * (batch["old_logps"] - batch["ref_logps"]) * mask
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
        high = s.clip_high if s.clip_high is not None else s.clip
        ratio = torch.exp((logps - r["old_logps"]) * mask)
        stats = {"clipfrac": masked_mean(((ratio - 1).abs() > s.clip).float(), mask),
                 "kl_per_token": masked_mean(r["old_logps"] - r["ref_logps"], mask),
                 "kl_coef": torch.tensor(r["kl_coef"])}
        if s.algorithm == "grpo":
            # dapo: normalised by the tokens of the whole (data-parallel) batch; DDP averages the
            # ranks' gradients, so each rank divides by its mean share.
            tokens = self.all_mean(mask.sum()) if s.loss_type == "dapo" else None
            return clipped_policy_loss(logps, r["old_logps"], r["ref_logps"], adv, mask, epsilon_low=s.clip,
                                       epsilon_high=high, beta=r["kl_coef"], loss_type=s.loss_type,
                                       max_completion_length=s.max_new_tokens, tokens_normalizer=tokens), stats
        if s.algorithm == "rloo":
            return rloo_policy_loss(logps, r["old_logps"], adv, mask, epsilon_low=s.clip, epsilon_high=high), stats
        clipped = ratio.clamp(1 - s.clip, 1 + high)
        pg = masked_mean(torch.max(-adv * ratio, -adv * clipped).float(), mask)
        values = self.value(r["tokens"]).float()
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
        stats.update(reward=r["scores"].mean(), response_len=r["lengths"].mean(),
                     **{f"reward/{k}": v.mean() for k, v in r["per_function"].items()})
        self.log_metrics("train", stats)
        return loss, int(r["mask"].sum())

    # ---- held-out evaluation ----
    @torch.no_grad()
    def validation_step(self, batch: list[dict], batch_idx: int) -> None:
        """group_size samples per held-out prompt, seeded alike at every validation (and for the
        reference's samples): reward per function, gold metric, KL per token, win rate."""
        s = self.cfg.stage
        prompts = [p for p in batch for _ in range(s.group_size)]
        seed = self.cfg.trainer.seed + batch_idx
        out = self.sample(prompts, self._generator(seed))
        mask = out["mask"]
        policy_logps = token_logps(self.model(out["tokens"]), out["labels"])
        ref_logps = token_logps(self.reference()(out["tokens"]), out["labels"])
        metrics = {"reward": out["scores"], **{f"reward/{k}": v for k, v in out["per_function"].items()},
                   "response_len": out["lengths"],
                   # log pi - log pi_ref of the sampled tokens: a Monte-Carlo KL(pi || pi_ref), nats per token
                   "kl_per_token": ((policy_logps - ref_logps) * mask).sum(1) / mask.sum(1).clamp(min=1)}
        gold = gold_scores(s, prompts, out["texts"], self.device)
        if gold is not None:
            metrics["gold"] = gold
        if s.win_rate:
            theirs = self.sample(prompts, self._generator(seed), model=self.reference())
            mine, other = ((gold, gold_scores(s, prompts, theirs["texts"], self.device)) if gold is not None
                           else (out["scores"], theirs["scores"]))
            metrics["win_rate"] = win_rate(mine, other)
        for k, v in metrics.items():
            self._val.setdefault(k, []).append(v.float())

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        means = {k: float(self.all_mean(torch.cat(v).mean())) for k, v in self._val.items()}
        self._val = {}
        if means:
            self.log("val/loss", -means.get("gold", means["reward"]), prog_bar=True, on_step=False, on_epoch=True)
            self.record_held_out(means, "reward")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.kl_control:
            checkpoint["kl_control"] = self.kl_control.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.kl_control and "kl_control" in checkpoint:
            self.kl_control.load_state_dict(checkpoint["kl_control"])
