"""llmexp's post-training losses against TRL's own trainer code (TRL, the `dev` extra): one
fixed batch from a tiny llmexp network goes through llmexp's stage code and through TRL's
DPOTrainer/CPOTrainer/ORPOTrainer/KTOTrainer/GRPOTrainer/RLOOTrainer methods (instances made
without __init__, carrying only the settings those methods read; a stand-in "model" returns
the same network's per-token log-probs or logits in TRL's layout). max |diff| <= 1e-5."""
from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from llmexp.data.chat import IGNORE, Example
from llmexp.data.preference import Pair, collate_pairs
from llmexp.models import Llama, LlamaShape
from llmexp.stages import losses
from llmexp.stages.dpo import preference_loss
from llmexp.stages.posttrain import token_logps

trl = pytest.importorskip("trl")
from trl import DPOTrainer, GRPOTrainer, KTOTrainer, RLOOTrainer  # noqa: E402
from trl.experimental.cpo import CPOTrainer  # noqa: E402
from trl.experimental.orpo import ORPOTrainer  # noqa: E402

TOL = 1e-5
PAD = 0
SHAPE = LlamaShape(vocab_size=40, n_layers=1, d_model=32, n_heads=2, n_kv_heads=2, ffn_dim=64, max_seq_len=32)


def net(seed: int) -> Llama:
    torch.manual_seed(seed)
    model = Llama(SHAPE).eval()
    with torch.no_grad():  # a non-trivial distribution (init_std is tiny): spread the output layer
        model.output.weight.mul_(40)
    return model


POLICY, REFERENCE = net(0), net(1)


def pairs(n: int = 4) -> list[Pair]:
    g = torch.Generator().manual_seed(7)

    def example(n_prompt: int, n_reply: int) -> Example:
        ids = torch.randint(1, SHAPE.vocab_size, (n_prompt + n_reply,), generator=g).tolist()
        return Example(ids, [False] * n_prompt + [True] * n_reply)

    out = []
    for i in range(n):
        n_prompt = 3 + i
        out.append(Pair(example(n_prompt, 2 + 2 * i), example(n_prompt, 5 - i)))
    return out


def stage(**kw) -> SimpleNamespace:
    base = dict(loss_type="sigmoid", beta=0.1, label_smoothing=0.0, reference_free=False, reference="model",
                simpo_gamma=0.5, desirable_weight=1.0, undesirable_weight=1.0)
    return SimpleNamespace(**{**base, **kw})


def trl_logps_model(network: Llama):
    """TRL's fused-head output for `network`: per-token log-probs of the labelled next tokens."""
    def forward(input_ids, labels=None, **_):
        with torch.no_grad():
            lp = token_logps(network(input_ids)[:, :-1], labels[:, 1:])
        zeros = torch.zeros_like(lp)
        return SimpleNamespace(log_probs=lp, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())
    return forward


def trl_logits_model(network: Llama):
    def forward(input_ids, **_):
        with torch.no_grad():
            return SimpleNamespace(logits=network(input_ids))
    return forward


def bare(cls, **attrs):
    """A TRL trainer instance without its __init__ (no model loading, no datasets)."""
    obj = cls.__new__(cls)
    accelerator = SimpleNamespace(device=torch.device("cpu"), num_processes=1,
                                  gather_for_metrics=lambda x: x, gather=lambda x: x, reduce=lambda x, **_: x)
    defaults = dict(accelerator=accelerator, model=SimpleNamespace(training=True), aux_loss_enabled=False,
                    _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0,
                    _tp_size=1, is_encoder_decoder=False, label_pad_token_id=IGNORE, padding_value=PAD,
                    pad_token_id=PAD, label_smoothing=0.0)
    for k, v in {**defaults, **attrs}.items():
        object.__setattr__(obj, k, v)
    return obj


def trl_dpo_batch(batch: dict, swap: bool = False, ref_zero: bool = False) -> dict:
    tokens, labels = batch["tokens"], batch["labels"]
    completion = torch.zeros_like(tokens)
    completion[:, 1:] = (labels[:, :-1] != IGNORE).long()
    attention = (torch.arange(tokens.shape[1])[None] <= batch["last"][:, None]).long()
    if swap:
        tokens, completion, attention = (torch.cat(x.chunk(2)[::-1]) for x in (tokens, completion, attention))
    masked = tokens.masked_fill(completion == 0, IGNORE)
    ref = trl_logps_model(REFERENCE)(tokens, labels=masked).log_probs.sum(1)
    if ref_zero:
        ref = torch.zeros_like(ref)
    ref_c, ref_r = ref.chunk(2)
    return {"input_ids": tokens, "attention_mask": attention, "completion_mask": completion,
            "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}


def trl_dpo(loss_type: str, beta: float, label_smoothing: float = 0.0, **batch_kw) -> float:
    trainer = bare(DPOTrainer, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
                   loss_types=[loss_type], loss_weights=[1.0], beta=beta, label_smoothing=label_smoothing,
                   use_weighting=False)
    batch = trl_dpo_batch(collate_pairs(pairs(), PAD), **batch_kw)
    return float(DPOTrainer._compute_loss(trainer, trl_logps_model(POLICY), batch, False))


def ours(**kw) -> float:
    s = stage(**kw)
    batch = collate_pairs(pairs(), PAD, kl_rows=s.loss_type == "kto")
    with torch.no_grad():
        return float(preference_loss(POLICY, batch, s, REFERENCE)[0])


def report(name: str, mine: float, theirs: float) -> None:
    print(f"\n{name}: llmexp {mine:.8f} TRL {theirs:.8f} |diff| {abs(mine - theirs):.2e}")
    assert abs(mine - theirs) <= TOL, (name, mine, theirs)


@pytest.mark.parametrize("loss_type,beta", [("sigmoid", 0.1), ("hinge", 0.3), ("ipo", 0.1), ("robust", 0.1)])
def test_dpo_loss_types_match_trl(loss_type, beta):
    smoothing = 0.2 if loss_type == "robust" else 0.0
    report(f"dpo {loss_type}", ours(loss_type=loss_type, beta=beta, label_smoothing=smoothing),
           trl_dpo(loss_type, beta, smoothing))


def test_ipo_is_length_normalised_as_trl_has_it():
    """The summed-log-prob IPO of older llmexp gives another number on this batch."""
    trl_ipo = trl_dpo("ipo", 0.1)
    report("dpo ipo", ours(loss_type="ipo"), trl_ipo)
    batch = collate_pairs(pairs(), PAD)
    with torch.no_grad():
        pi = token_logps(POLICY(batch["tokens"]), batch["labels"]).sum(-1)
        ref = token_logps(REFERENCE(batch["tokens"]), batch["labels"]).sum(-1)
    (pc, pr), (rc, rr) = pi.chunk(2), ref.chunk(2)
    summed = float((((pc - pr) - (rc - rr) - 5.0) ** 2).mean())
    assert abs(summed - trl_ipo) > 0.1


def test_cdpo_label_smoothing_matches_trl():
    """cDPO = (1-eps) * DPO + eps * DPO with the labels flipped: TRL 1.x's sigmoid on the batch
    and on its swapped copy (TRL dropped label_smoothing from sigmoid; its aot losses keep it)."""
    eps = 0.25
    theirs = (1 - eps) * trl_dpo("sigmoid", 0.1) + eps * trl_dpo("sigmoid", 0.1, swap=True)
    report("cdpo", ours(loss_type="sigmoid", label_smoothing=eps), theirs)


def test_reference_free_dpo_matches_trl():
    report("dpo reference-free", ours(reference_free=True), trl_dpo("sigmoid", 0.1, ref_zero=True))


def trl_pair_batch(batch: dict) -> dict:
    """CPO/ORPO's tokenized layout: chosen_*/rejected_* rows, labels IGNORE on the prompt."""
    tokens = batch["tokens"]
    attention = (torch.arange(tokens.shape[1])[None] <= batch["last"][:, None]).long()
    labels = torch.full_like(tokens, IGNORE)
    labels[:, 1:] = batch["labels"][:, :-1]
    out = {}
    for side, rows in zip(("chosen", "rejected"), (slice(0, len(tokens) // 2), slice(len(tokens) // 2, None))):
        out.update({f"{side}_input_ids": tokens[rows], f"{side}_attention_mask": attention[rows],
                    f"{side}_labels": labels[rows]})
    return out


def test_simpo_matches_trl_cpo_trainer():
    beta, gamma, eps = 2.0, 0.5, 0.1
    trainer = bare(CPOTrainer, loss_type="simpo", beta=beta, simpo_gamma=gamma, label_smoothing=eps, cpo_alpha=0.0,
                   alpha=0.0)
    batch = trl_pair_batch(collate_pairs(pairs(), PAD))
    theirs, _ = CPOTrainer.get_batch_loss_metrics(trainer, trl_logits_model(POLICY), batch, "train")
    report("simpo", ours(loss_type="simpo", beta=beta, simpo_gamma=gamma, label_smoothing=eps), float(theirs))


def test_orpo_matches_trl_orpo_trainer():
    trainer = bare(ORPOTrainer, beta=0.1)
    batch = trl_pair_batch(collate_pairs(pairs(), PAD))
    theirs, _ = ORPOTrainer.get_batch_loss_metrics(trainer, trl_logits_model(POLICY), batch, "train")
    report("orpo", ours(loss_type="orpo", beta=0.1), float(theirs))


def test_kto_matches_trl_kto_trainer():
    """Unpaired rows (chosen desirable, rejected undesirable), unequal weights, the KL reference
    point from TRL's cycled mismatched rows."""
    beta, wd, wu = 0.1, 1.0, 1.33
    batch = collate_pairs(pairs(), PAD, kl_rows=True)
    tokens, n = batch["tokens"], batch["tokens"].shape[0]

    def completion_of(tok, labels):
        c = torch.zeros_like(tok)
        c[:, 1:] = (labels[:, :-1] != IGNORE).long()
        return c

    completion = completion_of(tokens, batch["labels"])
    kl_completion = completion_of(batch["kl_tokens"], batch["kl_labels"])
    ref = trl_logps_model(REFERENCE)
    trl_batch = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens), "completion_mask": completion,
                 "label": torch.arange(n) < n // 2,
                 "KL_input_ids": batch["kl_tokens"], "KL_attention_mask": torch.ones_like(batch["kl_tokens"]),
                 "KL_completion_mask": kl_completion,
                 "ref_logps": ref(tokens, labels=tokens.masked_fill(completion == 0, IGNORE)).log_probs.sum(1),
                 "ref_KL_logps": ref(batch["kl_tokens"],
                                     labels=batch["kl_tokens"].masked_fill(kl_completion == 0, IGNORE)).log_probs.sum(1)}
    trainer = bare(KTOTrainer, calculate_KL=True, precompute_ref_logps=True, loss_type="kto", beta=beta,
                   desirable_weight=wd, undesirable_weight=wu)
    theirs = KTOTrainer._compute_loss(trainer, trl_logps_model(POLICY), trl_batch, False)
    report("kto", ours(loss_type="kto", beta=beta, desirable_weight=wd, undesirable_weight=wu), float(theirs))


# ---- RL -----------------------------------------------------------------------------------

def rollout(seed: int = 3, rows: int = 6, width: int = 7):
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(rows, width, generator=g) * 3
    old = logps + 0.3 * torch.randn(rows, width, generator=g)
    ref = logps + 0.2 * torch.randn(rows, width, generator=g)
    mask = torch.ones(rows, width)
    for i in range(rows):
        mask[i, 2 + i % 5:] = 0
    rewards = torch.randn(rows, generator=g)
    return logps, old, ref, mask, rewards


def trl_grpo_advantages(rewards: torch.Tensor, group: int, scale_rewards: str) -> torch.Tensor:
    """GRPOTrainer._generate_and_score_completions' advantage block (sum_then_normalize), with
    TRL's nanstd; the method itself needs generation, so its lines are replayed here."""
    from trl.trainer.utils import nanstd

    mean = torch.nanmean(rewards.view(-1, group), dim=1).repeat_interleave(group, dim=0)
    if scale_rewards in ("group", "none"):
        std = nanstd(rewards.view(-1, group), dim=1).repeat_interleave(group, dim=0)
    else:
        std = nanstd(rewards).expand_as(rewards)
    advantages = rewards - mean
    return advantages / (std + 1e-4) if scale_rewards != "none" else advantages


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_grpo_advantages_match_trl(scale_rewards):
    rewards = rollout()[4]
    diff = (losses.group_advantages(rewards, 3, scale_rewards) - trl_grpo_advantages(rewards, 3, scale_rewards))
    report(f"grpo advantages scale_rewards={scale_rewards}", float(diff.abs().max()), 0.0)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo", "bnpo"])
def test_grpo_loss_types_match_trl(loss_type):
    logps, old, ref, mask, rewards = rollout()
    advantages = losses.group_advantages(rewards, 3, "group")
    beta, eps_low, eps_high, max_len = 0.04, 0.2, 0.28, 7
    trainer = bare(GRPOTrainer, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
                   importance_sampling_level="token", beta=beta, loss_type=loss_type, epsilon_low=eps_low,
                   epsilon_high=eps_high, args=SimpleNamespace(delta=None, use_bias_correction_kl=False,
                                                               steps_per_generation=1),
                   use_vllm=False, current_gradient_accumulation_steps=1, max_completion_length=max_len,
                   _entropy_bonus_enabled=False, use_adaptive_entropy=False,
                   _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None))
    inputs = {"prompt_ids": torch.ones(6, 2, dtype=torch.long), "prompt_mask": torch.ones(6, 2),
              "completion_ids": torch.ones(6, 7, dtype=torch.long), "completion_mask": mask,
              "advantages": advantages, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": mask.sum()}
    theirs = GRPOTrainer._compute_loss(trainer, None, inputs)
    mine = losses.clipped_policy_loss(logps, old, ref, advantages, mask, epsilon_low=eps_low, epsilon_high=eps_high,
                                      beta=beta, loss_type=loss_type, max_completion_length=max_len)
    report(f"grpo loss_type={loss_type}", float(mine), float(theirs))


def test_rloo_advantages_and_loss_match_trl():
    """RLOO: leave-one-out baselines on KL-penalised rewards (TRL's lines replayed, as for
    GRPO's advantages), then RLOOTrainer._compute_loss itself."""
    logps, old, ref, mask, rewards = rollout()
    beta = 0.05
    penalised = rewards - beta * ((old - ref) * mask).sum(-1)
    g = penalised.view(-1, 3)
    trl_adv = (penalised - ((g.sum(1, keepdim=True) - g) / 2).view(-1))
    mine_adv = losses.rloo_advantages(penalised, 3)
    report("rloo advantages", float((mine_adv - trl_adv).abs().max()), 0.0)
    trainer = bare(RLOOTrainer, epsilon_low=0.2, epsilon_high=0.2, beta=beta,
                   _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None))
    inputs = {"prompt_ids": torch.ones(6, 2, dtype=torch.long), "prompt_mask": torch.ones(6, 2),
              "completion_ids": torch.ones(6, 7, dtype=torch.long), "completion_mask": mask,
              "advantages": trl_adv, "old_logps": (old * mask).sum(1)}
    theirs = RLOOTrainer._compute_loss(trainer, None, inputs)
    mine = losses.rloo_policy_loss(logps, old, mine_adv, mask, epsilon_low=0.2, epsilon_high=0.2)
    report("rloo loss", float(mine), float(theirs))


def test_losses_reduce_in_float32_under_bf16_inputs():
    logps, old, ref, mask, rewards = (x.bfloat16() for x in rollout())
    assert losses.clipped_policy_loss(logps, old, ref, losses.group_advantages(rewards, 3, "group"), mask,
                                      epsilon_low=0.2, epsilon_high=0.2, beta=0.04, loss_type="dapo",
                                      max_completion_length=7).dtype == torch.float32
    pair = torch.tensor([-3.0, -5.0, -4.0, -4.5]).bfloat16()
    assert losses.dpo_losses(pair, pair * 0.9, torch.ones(4), 0.1, "ipo")[0].dtype == torch.float32
    assert losses.orpo_losses(pair / 4, 0.1)[0].dtype == torch.float32
