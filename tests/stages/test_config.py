"""Post-training configs: compose, validate and plan without training (milliseconds each)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import llmexp
from llmexp.config.errors import ConfigError
from llmexp.plan import lora_params
from llmexp.rundir import config_dict
from tests.stages.conftest import MODEL


@pytest.fixture
def fake_run(tmp_path) -> Path:
    """A run folder as validation sees it: config.yaml and a checkpoint file (never loaded here)."""
    def make(name: str, *overrides: str) -> Path:
        folder = tmp_path / name
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
        cfg = llmexp.compose([*MODEL, *overrides])
        (folder / "config.yaml").write_text(yaml.safe_dump(config_dict(cfg)))
        return folder
    return make


STAGES = ["stage=sft", "stage=reward", "stage=dpo", "stage=rlhf"]


@pytest.mark.parametrize("stage", STAGES)
def test_post_training_stage_without_init_from_fails_in_validation(stage):
    with pytest.raises(ConfigError, match=r"^init_from=None: stage=\w+ starts from a trained model"):
        llmexp.compose([stage, "stage.dataset=synthetic:sort"])


@pytest.mark.parametrize("stage", STAGES)
def test_model_and_tokenizer_come_from_init_from(stage, fake_run):
    base = fake_run("base")
    extra = ["stage.reward_fn=llmexp.stages.tasks:sort_reward"] if stage == "stage=rlhf" else []
    cfg = llmexp.compose([stage, f"init_from={base}", "stage.dataset=synthetic:sort", *extra])
    assert (cfg.model.name, cfg.model.d_model, cfg.model.n_layers, cfg.tokenizer.vocab_size) == ("micro", 64, 2, 320)
    plan = llmexp.derive(cfg)
    assert plan.vocab_size == 320 and plan.stage == cfg.stage.name


def test_a_model_override_that_contradicts_init_from_is_a_clear_error(fake_run):
    base = fake_run("base")
    with pytest.raises(ConfigError, match=r"model.d_model=128: init_from's model has d_model=64"):
        llmexp.compose(["stage=sft", f"init_from={base}", "stage.dataset=synthetic:sort", *MODEL, "model.d_model=128"])
    # Repeating the same model is fine.
    assert llmexp.compose(["stage=sft", f"init_from={base}", "stage.dataset=synthetic:sort", *MODEL]).model.d_model == 64


def test_continued_pretraining_takes_the_model_and_tokenizer_of_its_run(fake_run):
    """init_from=<llmexp run> at stage=pretrain: the run's shape and tokenizer, as a post-training
    stage takes them (a different model was a size-mismatch traceback when the weights loaded)."""
    base = fake_run("base")
    cfg = llmexp.compose([f"init_from={base}"])
    assert (cfg.model.name, cfg.model.d_model, cfg.model.n_layers, cfg.tokenizer.vocab_size) == ("micro", 64, 2, 320)
    with pytest.raises(ConfigError, match=r"^model.n_layers=12: init_from's model has n_layers=2: stage=pretrain"):
        llmexp.compose([f"init_from={base}", "model=125m"])


def test_lora_trainable_parameters_in_the_plan(fake_run):
    base = fake_run("base")
    cfg = llmexp.compose(["stage=sft", f"init_from={base}", "stage.dataset=synthetic:sort", "stage.lora.enabled=true",
                          "stage.lora.rank=4", "stage.lora.targets=[wq,wv,w1]"])
    plan = llmexp.derive(cfg)
    # rank x (in + out) per matrix per layer: wq 64+64, wv 64+64, w1 64+176; 2 layers.
    assert plan.params_trainable == 2 * 4 * (128 + 128 + 240) == lora_params(cfg.model, ["wq", "wv", "w1"], 4)
    assert plan.params_trainable < plan.params_total
    assert "trainable" in llmexp.plan.format_plan(plan)
    full = llmexp.derive(llmexp.compose(["stage=sft", f"init_from={base}", "stage.dataset=synthetic:sort"]))
    assert full.params_trainable == full.params_total


@pytest.mark.parametrize("overrides,message", [
    (["stage=sft", "stage.loss_on=prompt"], "stage.loss_on='prompt': allowed: assistant, all"),
    (["stage=sft", "stage.truncation=middle"], "stage.truncation='middle': allowed: error, left, right, drop"),
    (["stage=sft", "stage.chat_template=llama3"], "stage.chat_template='llama3': model (the model's own Jinja template"),
    (["stage=sft", "stage.dataset=/no/such.jsonl"], "stage.dataset='/no/such.jsonl': no such file"),
    (["stage=sft", "stage.lora.enabled=true", "stage.lora.targets=[q_proj]"], "stage.lora.targets=['q_proj']"),
    (["stage=sft", "stage.lora.enabled=true", "stage.lora.quantize=nf4", "trainer.accelerator=cpu"],
     "stage.lora.quantize='nf4': 4-bit QLoRA needs bitsandbytes on a CUDA GPU"),
    (["stage=dpo", "stage.beta=0"], "stage.beta=0.0: must be > 0"),
    (["stage=dpo", "stage.loss_type=dpop"], "stage.loss_type='dpop': allowed: sigmoid, hinge, ipo, robust, simpo, orpo, kto"),
    (["stage=dpo", "stage.loss_type=robust", "stage.label_smoothing=0.5"], "stage.label_smoothing=0.5: must be in [0, 0.5)"),
    (["stage=rlhf"], "stage.reward_fn=None: reward=callable needs 'package.module:function'"),
    (["stage=rlhf", "stage.reward_fn=a:b", "parallelism.strategy=fsdp_tp", "parallelism.tensor_parallel_size=2",
      "trainer.devices=4", "trainer.accelerator=cpu", "trainer.global_batch_size=64"],
     "parallelism.strategy='fsdp_tp': stage=rlhf samples its rollouts token by token"),
    (["stage=rlhf", "stage.reward_fn=a:b", "stage.top_p=1.5"], "stage.top_p=1.5: must be in (0, 1] or null"),
    (["stage=rlhf", "stage.reward_fn=a:b", "stage.algorithm=grpo", "stage.loss_type=gspo"],
     "stage.loss_type='gspo': allowed: grpo, dapo, dr_grpo, bnpo"),
    (["stage=rlhf", "stage.rewards=[{kind: model, source: null}]"], "stage.rewards.0.source=None: reward=model needs"),
    (["stage=rlhf", "stage.reward=model"], "stage.reward_model=None: reward=model needs an llmexp run folder"),
    (["stage=rlhf", "stage.algorithm=grpo", "stage.group_size=1", "stage.reward_fn=a:b"], "stage.group_size=1: GRPO"),
    (["stage=rlhf", "stage.algorithm=a2c"], "stage.algorithm='a2c': allowed: ppo, grpo"),
    (["stage=rlhf", "stage.reward_fn=a:b", "stage.max_new_tokens=64"], "stage.max_new_tokens=64: must leave room"),
    (["stage=rlhf", "stage.reward_fn=a:b", "trainer.micro_batch_size=4", "trainer.global_batch_size=8"],
     "trainer.global_batch_size=8: stage=rlhf updates once per rollout batch, without accumulation"),
])
def test_bad_post_training_keys_fail_with_one_line(overrides, message, fake_run):
    base = fake_run("base")
    with pytest.raises(ConfigError) as err:
        llmexp.compose([f"init_from={base}", "stage.dataset=synthetic:sort", *overrides])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_reward_model_with_another_tokenizer_is_refused(fake_run):
    policy = fake_run("policy")
    reward = fake_run("reward", "stage=reward", f"init_from={policy}", "stage.dataset=synthetic:sort",
                      "tokenizer.vocab_size=400")
    # fake_run composes the reward run's config from MODEL (vocab 320) + its init_from; give it its own tokenizer
    saved = yaml.safe_load((reward / "config.yaml").read_text())
    saved["tokenizer"]["vocab_size"] = 400
    (reward / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigError, match=r"stage.reward_model=.*its tokenizer .* differs from the policy's"):
        llmexp.compose(["stage=rlhf", f"init_from={policy}", "stage.dataset=synthetic:sort", "stage.reward=model",
                        f"stage.reward_model={reward}"])
    with pytest.raises(ConfigError, match=r"is a stage=pretrain run: needs a stage=reward run"):
        llmexp.compose(["stage=rlhf", f"init_from={policy}", "stage.dataset=synthetic:sort", "stage.reward=model",
                        f"stage.reward_model={policy}"])


def test_pipeline_is_validated_and_planned_before_anything_runs(tmp_path):
    from llmexp.pipeline import plan_pipeline

    argv = ["experiment=rlhf_pipeline", f"run_dir={tmp_path / 'p'}"]
    cfg = llmexp.compose(argv)
    steps = plan_pipeline(cfg, argv)
    assert [s.name for s in steps] == ["pretrain", "sft", "reward", "rlhf"]
    assert [s.cfg.stage.name for s in steps] == ["pretrain", "sft", "reward", "rlhf"]
    assert steps[1].cfg.init_from == str(steps[0].run_dir) and steps[1].cfg.model.d_model == 64
    assert steps[3].cfg.init_from == str(steps[1].run_dir)  # the policy continues from SFT
    assert steps[3].cfg.stage.reward_model == str(steps[2].run_dir)
    assert all(s.plan.steps > 0 for s in steps) and not (tmp_path / "p").exists()  # nothing ran
    # A bad key in a late step fails before the first step runs, naming the step.
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "bad.yaml").write_text(
        "# @package _global_\npipeline:\n  - {name: pretrain, overrides: []}\n"
        "  - {name: sft, overrides: [stage=sft, stage.dataset=synthetic:sort, stage.loss_on=prompt]}\n")
    bad = ["experiment=bad", f"run_dir={tmp_path / 'b'}"]
    with pytest.raises(ConfigError, match=r"^pipeline.1\(sft\).stage.loss_on='prompt': allowed: assistant, all"):
        plan_pipeline(llmexp.compose(bad, [tmp_path]), bad, [tmp_path])
    assert not (tmp_path / "b").exists()


def test_synthetic_task_names_are_checked_in_validation(fake_run):
    from llmexp.config.groups.stage import SYNTHETIC_TASKS
    from llmexp.stages.tasks import TASKS

    assert tuple(TASKS) == SYNTHETIC_TASKS  # validation knows every generator, and only those
    with pytest.raises(ConfigError, match=r"^stage.dataset='synthetic:nope': allowed: synthetic:sort$"):
        llmexp.compose(["stage=sft", f"init_from={fake_run('base')}", "stage.dataset=synthetic:nope", "dry_run=true"])
