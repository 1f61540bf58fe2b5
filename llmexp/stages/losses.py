"""Post-training losses as TRL defines and names them (TRL 1.16; parity tests in
tests/stages/test_trl_parity.py). Pure tensor functions, every reduction in float32.

Preference (`stage=dpo`, `stage.loss_type`): sigmoid (DPO; with label_smoothing: cDPO),
hinge, ipo (log-ratios averaged over completion tokens, as TRL and the IPO authors do),
robust, simpo (CPO trainer's loss_type=simpo), orpo, kto (TRL's KTO on unpaired rows).
RL (`stage=rlhf`): group advantages with scale_rewards group|batch|none, RLOO's
leave-one-out baseline, and the clipped surrogate aggregated by loss_type grpo|dapo|dr_grpo|bnpo.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

REFERENCE_FREE_LOSS_TYPES = ("simpo", "orpo")  # these never read a reference model


def halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) of a batch laid out chosen rows first."""
    return x.float().chunk(2, dim=0)


def dpo_losses(logps: torch.Tensor, ref_logps: torch.Tensor, lengths: torch.Tensor, beta: float, loss_type: str,
               label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses of DPOTrainer's loss types from summed completion log-probs (chosen rows
    first); `lengths`: completion tokens per row. Returns (losses, chosen rewards, rejected
    rewards) with rewards beta * log(pi/pi_ref), as TRL logs them. reference_free: pass zeros
    as ref_logps. label_smoothing with sigmoid is cDPO (Mitchell 2023): TRL 1.x keeps the
    formula in its `aot` losses and robust DPO; older TRL applied it to sigmoid, as here."""
    pi_c, pi_r = halves(logps)
    ref_c, ref_r = halves(ref_logps)
    chosen, rejected = pi_c - ref_c, pi_r - ref_r
    delta = chosen - rejected
    if loss_type == "sigmoid":
        losses = (-F.logsigmoid(beta * delta) * (1 - label_smoothing) - F.logsigmoid(-beta * delta) * label_smoothing)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * delta)
    elif loss_type == "ipo":
        len_c, len_r = halves(lengths)
        losses = (chosen / len_c.clamp(min=1) - rejected / len_r.clamp(min=1) - 1 / (2 * beta)) ** 2
    elif loss_type == "robust":
        clean = -(1 - label_smoothing) * F.logsigmoid(beta * delta)
        flipped = -label_smoothing * F.logsigmoid(-beta * delta)
        losses = (clean - flipped) / (1 - 2 * label_smoothing)
    else:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}")
    return losses, beta * chosen.detach(), beta * rejected.detach()


def simpo_losses(avg_logps: torch.Tensor, beta: float, simpo_gamma: float,
                 label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimPO (Meng et al. 2024) as TRL's CPOTrainer(loss_type="simpo", cpo_alpha=0): length-
    averaged log-probs, no reference, a target margin gamma. Rewards: beta * avg log-prob."""
    c, r = halves(avg_logps)
    logits = (c - r) - simpo_gamma / beta
    losses = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    return losses, beta * c.detach(), beta * r.detach()


def orpo_losses(avg_logps: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ORPO's odds-ratio term (Hong et al. 2024), TRL's ORPOTrainer.odds_ratio_loss: the
    per-pair loss to add to the chosen NLL is -beta * log sigmoid(log odds ratio)."""
    c, r = halves(avg_logps)
    log_odds = (c - r) - (log1mexp(c) - log1mexp(r))
    return -beta * F.logsigmoid(log_odds), beta * c.detach(), beta * r.detach()


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, branching at -ln 2 against cancellation (torch has none)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def kto_losses(logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor, beta: float,
               desirable_weight: float, undesirable_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """KTO (Ethayarajh et al. 2024), TRL's KTOTrainer loss_type=kto on unpaired rows:
    `desirable` marks each row's label; `kl` is the (detached, clamped >= 0) batch estimate of
    KL(pi || pi_ref) from mismatched prompt/completion rows. Returns (weighted losses of the
    desirable rows then the undesirable ones, their rewards)."""
    ratio = logps.float() - ref_logps.float()
    good, bad = ratio[desirable], ratio[~desirable]
    losses = torch.cat([desirable_weight * (1 - torch.sigmoid(beta * (good - kl))),
                        undesirable_weight * (1 - torch.sigmoid(beta * (kl - bad)))])
    return losses, beta * good.detach(), beta * bad.detach()


def kto_kl(kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point: mean log-ratio of mismatched rows, detached, at least 0."""
    return (kl_logps.float() - ref_kl_logps.float()).mean().detach().clamp(min=0)


# ---- RL -----------------------------------------------------------------------------------

def group_advantages(rewards: torch.Tensor, group_size: int, scale_rewards: str) -> torch.Tensor:
    """GRPO's advantages: each reward less its group's mean, divided by the group's std
    (group), the whole batch's std (batch, Dr. GRPO's advice against difficulty bias) or not
    at all (none); std is unbiased and 1e-4 is added, as in TRL."""
    rewards = rewards.float()
    groups = rewards.view(-1, group_size)
    advantages = (groups - groups.mean(1, keepdim=True)).flatten()
    if scale_rewards == "group":
        return advantages / (groups.std(1).repeat_interleave(group_size) + 1e-4)
    if scale_rewards == "batch":
        return advantages / (rewards.std() + 1e-4)
    return advantages


def rloo_advantages(rewards: torch.Tensor, group_size: int, normalize: bool = False) -> torch.Tensor:
    """REINFORCE leave-one-out (Ahmadian et al. 2024): each reward less the mean of its
    group's other samples; `normalize` standardises over the batch (TRL's normalize_advantages)."""
    groups = rewards.float().view(-1, group_size)
    baselines = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    advantages = (groups - baselines).flatten()
    if normalize:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-4)
    return advantages


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate exp(r) - r - 1 with r = log pi_ref - log pi (Schulman's
    k3: unbiased, non-negative), GRPO's penalty term."""
    r = ref_logps.float() - logps.float()
    return torch.exp(r) - r - 1


def clipped_policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor | None,
                        advantages: torch.Tensor, mask: torch.Tensor, *, epsilon_low: float, epsilon_high: float,
                        beta: float, loss_type: str, max_completion_length: int,
                        tokens_normalizer: torch.Tensor | None = None) -> torch.Tensor:
    """GRPOTrainer's loss: clipped token-level surrogate (+ beta * k3 KL to the reference),
    aggregated by loss_type: grpo (mean per sequence, then over sequences), bnpo (mean over
    this batch's tokens), dr_grpo (sum / (rows * max_completion_length)), dapo (sum / tokens of
    the global batch: `tokens_normalizer`, this rank's share of them; default: this batch's)."""
    mask = mask.float()
    adv = advantages.float()
    adv = adv[:, None] if adv.dim() == 1 else adv
    ratio = torch.exp(logps.float() - old_logps.float())
    clipped = ratio.clamp(1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    if beta != 0.0:
        per_token = per_token + beta * k3_kl(logps, ref_logps)
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        return (per_token * mask).sum() / (per_token.size(0) * max_completion_length)
    if loss_type == "dapo":
        normalizer = mask.sum() if tokens_normalizer is None else tokens_normalizer
        return (per_token * mask).sum() / normalizer.clamp(min=1.0)
    raise ValueError(f"unknown GRPO loss_type {loss_type!r}")


def rloo_policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                     epsilon_low: float, epsilon_high: float) -> torch.Tensor:
    """RLOOTrainer's loss: a sequence-level clipped surrogate on summed completion log-probs
    (the KL penalty is in the reward, not here)."""
    mask = mask.float()
    ratio = torch.exp((logps.float() * mask).sum(1) - (old_logps.float() * mask).sum(1))
    adv = advantages.float()
    return (-torch.min(ratio * adv, ratio.clamp(1 - epsilon_low, 1 + epsilon_high) * adv)).mean()
