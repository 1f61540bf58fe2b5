"""KTO, ORPO, SimPO and RLOO learn on held-out data (seconds each on a CPU; three seeds under
`-m slow`); several weighted rewards are logged apart; the adaptive KL controller moves its
coefficient; a planted reward hack (a reward preferring a degenerate answer) raises the
over-optimisation warning while the gold metric (exact match) falls."""
from __future__ import annotations

import json

import pytest

from llmexp.stages.rewards import AdaptiveKLController
from tests.stages.conftest import FAST, train
from tests.stages.test_learning import REWARD_FN, held_out_preference, metric

PREFERENCE = {  # loss_type -> (beta, learning rate)
    "kto": ("0.1", "5e-4"),
    "orpo": ("1.0", "2e-4"),  # lambda 1: the odds-ratio term, not the NLL, dominates on this easy task
    "simpo": ("2.0", "5e-4"),
}


def preference_run(sft_run, run_dir, loss_type: str, seed: int = 0) -> None:
    beta, lr = PREFERENCE[loss_type]
    train([*FAST, "stage=dpo", f"stage.loss_type={loss_type}", f"stage.beta={beta}", f"init_from={sft_run}",
           "stage.dataset=synthetic:sort", "trainer.max_steps=20", "trainer.val_every=20", f"optimizer.lr={lr}",
           f"trainer.seed={seed}", f"run_dir={run_dir}"])


def assert_preference_learned(sft_run, run_dir, loss_type: str) -> None:
    """The method's own held-out margin (validation pairs) widens; on fresh pairs the policy
    still prefers the chosen replies at least as often."""
    (acc0, gap0), (acc1, gap1) = held_out_preference(sft_run), held_out_preference(run_dir)
    margin, accuracy = metric(run_dir, "val/rewards/margin"), metric(run_dir, "val/rewards/accuracy")
    print(f"\n{loss_type}: held-out margin {margin[0]:.3f} -> {margin[-1]:.3f}, accuracy {accuracy[0]:.2f} -> "
          f"{accuracy[-1]:.2f}; fresh pairs preferred {acc0:.2f} -> {acc1:.2f}, log-prob gap {gap0:.2f} -> {gap1:.2f}")
    assert acc1 >= acc0
    if loss_type == "orpo":  # TRL's ORPO NLL spans prompt and reply: its held-out loss falls, the margin barely moves
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["val_loss"] < summary["initial_val_loss"] - 0.5
    else:
        assert margin[-1] > margin[0] + 0.1


@pytest.mark.parametrize("loss_type", list(PREFERENCE))
def test_preference_methods_learn_on_held_out_pairs(sft_run, tmp_path, loss_type):
    preference_run(sft_run, tmp_path / loss_type, loss_type)
    assert_preference_learned(sft_run, tmp_path / loss_type, loss_type)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("loss_type", list(PREFERENCE))
def test_preference_methods_learn_across_seeds(sft_run, tmp_path, loss_type, seed):
    preference_run(sft_run, tmp_path / loss_type, loss_type, seed)
    assert_preference_learned(sft_run, tmp_path / loss_type, loss_type)


def rl_run(sft_run, run_dir, *extra: str, steps: int = 40, seed: int = 0) -> None:
    train([*FAST, "stage=rlhf", f"init_from={sft_run}", "stage.dataset=synthetic:sort", "stage.max_new_tokens=12",
           "stage.temperature=0.7", "stage.kl_coef=0.02", "stage.val_prompts=48", "stage.eval_fn=llmexp.stages.tasks:sort_correct",
           f"trainer.max_steps={steps}", f"trainer.val_every={steps}", "trainer.log_every=1", "optimizer.lr=1e-3",
           f"trainer.seed={seed}", f"run_dir={run_dir}", *extra])


def assert_rloo_learned(run_dir) -> None:
    reward, gold = metric(run_dir, "val/reward"), metric(run_dir, "val/gold")
    print(f"\nrloo: held-out reward {reward[0]:.3f} -> {reward[-1]:.3f}, exact match {gold[0]:.3f} -> {gold[-1]:.3f}")
    assert reward[-1] > reward[0] + 0.05


def test_rloo_raises_the_held_out_reward(sft_run, tmp_path):
    rl_run(sft_run, tmp_path / "rloo", "stage.algorithm=rloo", REWARD_FN, "optimizer.lr=1e-3", steps=90)
    assert_rloo_learned(tmp_path / "rloo")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rloo_learns_across_seeds(sft_run, tmp_path, seed):
    rl_run(sft_run, tmp_path / "rloo", "stage.algorithm=rloo", REWARD_FN, "optimizer.lr=1e-3", steps=90, seed=seed)
    assert_rloo_learned(tmp_path / "rloo")


def test_weighted_rewards_are_logged_apart_and_adaptive_kl_moves(sft_run, tmp_path):
    run_dir = tmp_path / "multi"
    rl_run(sft_run, run_dir, "stage.algorithm=grpo", "stage.loss_type=dapo", "stage.scale_rewards=batch",
           "stage.rewards=[{kind: callable, source: 'llmexp.stages.tasks:sort_reward', weight: 1.0},"
           "{kind: callable, source: 'tests.stages.planted:brevity', weight: 0.5}]",
           "stage.kl_target=0.01", "stage.kl_horizon=200", "stage.top_p=0.9", steps=4)
    rows = zip(metric(run_dir, "train/reward"), metric(run_dir, "train/reward/sort_reward"),
               metric(run_dir, "train/reward/brevity"))
    for total, sort, brevity in rows:
        assert total == pytest.approx(sort + 0.5 * brevity, abs=1e-5)
    coef = metric(run_dir, "train/kl_coef")
    assert coef[0] == pytest.approx(0.02) and coef[-1] != pytest.approx(0.02)
    report = json.loads((run_dir / "posttrain.json").read_text())
    assert {"reward", "reward/sort_reward", "reward/brevity", "gold", "kl_per_token", "win_rate"} <= set(report["history"][0])


def test_adaptive_kl_controller_tracks_its_target():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(12.0, 10)  # twice the target: error clipped to +0.2
    assert ctl.value == pytest.approx(0.1 * 1.02)
    ctl.update(3.0, 10)
    assert ctl.value == pytest.approx(0.1 * 1.02 * 0.98)


def test_a_planted_reward_hack_raises_the_warning(sft_run, tmp_path):
    """The reward prefers answers made of one repeated letter; the policy learns it, the
    exact match falls, and the run says so (posttrain.json, val/overoptimised, a warning)."""
    run_dir = tmp_path / "hack"
    with pytest.warns(UserWarning, match="reward over-optimisation"):
        rl_run(sft_run, run_dir, "stage.algorithm=grpo", "stage.reward_fn=tests.stages.planted:repetition",
               "stage.kl_coef=0.0", "stage.win_rate=false", "optimizer.lr=2e-3", steps=30)
    reward, gold = metric(run_dir, "val/reward"), metric(run_dir, "val/gold")
    print(f"\nplanted hack: held-out reward {reward[0]:.3f} -> {reward[-1]:.3f}, exact match {gold[0]:.3f} -> {gold[-1]:.3f}")
    assert reward[-1] > reward[0] and gold[-1] < gold[0]
    assert metric(run_dir, "val/overoptimised")[-1] == 1.0
    assert "reward over-optimisation" in json.loads((run_dir / "posttrain.json").read_text())["warnings"][0]


def test_a_reward_model_that_prefers_a_degenerate_answer_raises_the_warning(sft_run, tmp_path):
    """The planted hack as a learned reward: a stage=reward model trained on pairs whose chosen
    reply repeats one letter and whose rejected reply is the right answer."""
    from llmexp.stages.tasks import preference_records

    prefs = tmp_path / "planted.jsonl"
    with prefs.open("w") as f:
        for r in preference_records(400, seed=11):
            f.write(json.dumps({"prompt": r["prompt"], "chosen": " ".join(r["chosen"].split()[:1] * 4),
                                "rejected": r["chosen"]}) + "\n")
    reward = tmp_path / "reward"
    train([*FAST, "stage=reward", f"init_from={sft_run}", f"stage.dataset={prefs}", "trainer.max_steps=30",
           "trainer.val_every=30", "optimizer.lr=3e-3", f"run_dir={reward}"])
    run_dir = tmp_path / "hack"
    with pytest.warns(UserWarning, match="reward over-optimisation"):
        rl_run(sft_run, run_dir, "stage.algorithm=grpo", "stage.reward=model", f"stage.reward_model={reward}",
               "stage.kl_coef=0.0", "stage.win_rate=false", "optimizer.lr=2e-3", steps=30)
    reward_curve, gold = metric(run_dir, "val/reward"), metric(run_dir, "val/gold")
    print(f"\nplanted reward model: held-out score {reward_curve[0]:.3f} -> {reward_curve[-1]:.3f}, "
          f"exact match {gold[0]:.3f} -> {gold[-1]:.3f}")
    assert reward_curve[-1] > reward_curve[0] and gold[-1] < gold[0]
