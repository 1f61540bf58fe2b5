"""The command-line contract: every subcommand in the registry and every command shown in
README.md and docs/*.md is executed by the test suite, so a documented command cannot crash.

Commands are extracted from the docs (code blocks and inline code starting with `python -m
llmexp` or `llmexp`). Each one is either run here — a run with `dry_run=true` appended so it
plans and never trains, a tool as written — or listed in DOCUMENTED_ELSEWHERE with the test
that runs it (a training, a sweep, a SLURM launch). A new documented command in neither place
fails this file.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from llmexp.cli import SUBCOMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"(python -m llmexp(\.\w+)?|llmexp)(\s|$)")

# Documented commands that train, launch or need a run folder: the test that executes each.
DOCUMENTED_ELSEWHERE = {
    "python -m llmexp trainer=debug": "tests/test_training.py",
    "python -m llmexp stage=sft init_from=runs/<pretrain run> stage.dataset=chat.jsonl": "tests/stages/test_config.py",
    "python -m llmexp stage=sft init_from=runs/base stage.dataset=chat.jsonl": "tests/stages/test_config.py",
    "python -m llmexp stage=sft init_from=runs/base stage.dataset=chat.jsonl stage.lora.enabled=true stage.lora.rank=16":
        "tests/stages/test_config.py",
    "python -m llmexp stage=reward init_from=runs/sft stage.dataset=prefs.jsonl": "tests/stages/test_config.py",
    "python -m llmexp stage=dpo init_from=runs/sft stage.dataset=prefs.jsonl stage.beta=0.1": "tests/stages/test_config.py",
    "python -m llmexp stage=rlhf init_from=runs/sft stage.dataset=prompts.jsonl stage.reward=model stage.reward_model=runs/reward":
        "tests/stages/test_config.py",
    "python -m llmexp stage=rlhf init_from=runs/sft stage.dataset=prompts.jsonl stage.algorithm=grpo stage.reward_fn=llmexp.stages.tasks:sort_reward":
        "tests/stages/test_config.py",
    "python -m llmexp stage=eval init_from=runs/pretrain-tiny-1a2b3c4d eval=smoke": "tests/eval",
    "python -m llmexp stage=eval init_from=runs/pretrain-tiny-1a2b3c4d eval=standard eval.limit=200": "tests/eval",
    "python -m llmexp stage=eval init_from=./my-hf-llama eval=smoke eval.batch_size=32": "tests/eval",
    "python -m llmexp stage=eval init_from=runs/x/checkpoints/best.ckpt eval.tasks=[arc_easy] eval.num_fewshot=5": "tests/eval",
    "python -m llmexp.eval --model llmexp --model_args checkpoint=runs/pretrain-tiny-1a2b3c4d --tasks llmexp_smoke --batch_size 16 --output_path out/":
        "tests/eval",
    "python -m llmexp export <run> <folder> [--adapter]": "tests/eval/test_open_model_journey.py",
    "python -m llmexp export runs/pretrain-tiny-1a2b3c4d out/hf [--dtype float32|bfloat16|float16] [--tokenizer DIR]":
        "tests/eval/test_interop.py",
    "python -m llmexp sweep sweeps/lr_bayes.yaml --count 8": "tests/sweep",
    "python -m llmexp.sweep sweeps/lr_bayes.yaml --count 8": "tests/sweep",
    "python -m llmexp.sweep sweeps/batch_lr_grid.yaml": "tests/sweep",
    "python -m llmexp -m hydra/launcher=slurm hydra.launcher.partition=gpu model=125m,350m,1b": "tests/sweep/test_multirun.py",
    "python -m llmexp -m logger=wandb model=tiny trainer.micro_batch_size=16 trainer.max_tokens=800000 trainer.global_batch_size=16,32,64 optimizer.lr=0.001,0.003,0.01 hydra/launcher=submitit_slurm":
        "tests/sweep/test_multirun.py",
    "python -m llmexp.scaling run studies/cpu": "tests/scaling/test_scaling_study_runs.py",
    "python -m llmexp.scaling report studies/cpu --target 1e15": "tests/scaling/test_scaling_study_runs.py",
    "python -m llmexp.scaling isoflop --budgets 2e12,4e12,8e12 --family micro --out studies/cpu [overrides]":
        "tests/scaling/test_scaling_cli.py",
    "python -m llmexp.scaling isoflop --out studies/mine --budgets 1e18,3e18,1e19 --family gpt --sizes-per-budget 5 --span 10 --center tpp --lr deepseek --batch-tokens deepseek --warmup-fraction 0.05 tokenizer=gpt2 data=jsonl data.sources.0.path=corpus.jsonl":
        "tests/scaling/test_scaling_cli.py",
    "python -m llmexp.scaling fit studies/mine --target 1e21 [--bootstrap 100] [--level 0.95] [--json]":
        "tests/scaling/test_scaling_cli.py",
    "python -m llmexp.scaling fit --points runs.csv --target 1e21": "tests/scaling/test_scaling_cli.py",
    "python -m llmexp.scaling plan --compute 1e22 --law studies/cpu": "tests/scaling/test_scaling_study_runs.py",
    "python -m llmexp.scaling plan --compute 1e15 --law studies/cpu":
        "tests/scaling/test_scaling_study_runs.py::test_tiny_study_end_to_end",
    "python -m llmexp.scaling fit studies/cpu --target 1e15": "tests/scaling/test_scaling_study_runs.py::test_tiny_study_end_to_end",
    "python -m llmexp.scaling fit studies/cpu --target 1e15 --flops 6ND --outliers residual":
        "tests/scaling/test_scaling_study_runs.py::test_tiny_study_end_to_end",
    "python -m llmexp.scaling fit studies/mine --target 1e21 --flops 6ND --outliers residual --budget-tolerance 0.05":
        "tests/scaling/test_scaling_study_runs.py::test_tiny_study_end_to_end",
    "llmexp prepare data=web data.sources.0.path=crawl/web.jsonl data.sources.0.clean.url_blocklist=blocked.txt":
        "tests/data/test_data_quality.py::test_prepare_then_train_on_the_planted_web_corpus",
    "python -m llmexp stage=sft init_from=./my-hf-folder stage.dataset=chat.jsonl stage.chat_template=model":
        "tests/eval/test_open_model_journey.py::test_foreign_model_lora_sft_export_generate_and_evaluate",
    "python -m llmexp experiment=chat_pipeline": "tests/stages",
    "python -m llmexp logger=wandb logger.project=my-project": "tests/test_outputs.py",
    "python -m llmexp eval=smoke eval.every_n_steps=200": "tests/eval",
    "python -m llmexp eval=smoke eval.every_n_steps=200 eval.limit=50": "tests/eval",
    "python -m llmexp --config-dir ./my_conf model=my_model": "tests/test_cli_contract.py::test_config_dir_and_hydra_flags",
    "python -m llmexp --config-dir my_conf model=my1b tokenizer=bpe_32k": "tests/scaling/test_scaling_cli.py",
    "python -m llmexp data=text 'data.sources.0.path=~/notes/**/*.md'": "tests/data",
    "python -m llmexp prepare data=mix": "tests/data",
    "python -m llmexp.sweep": "tests/test_cli_contract.py::test_every_subcommand_is_documented_and_answers_help",
    "python -m llmexp.sweep studies/mine/sweep.yaml": "tests/scaling/test_scaling_cli.py",
    "python -m llmexp.sweep studies/mine/sweep.yaml --check": "tests/scaling/test_scaling_cli.py",
    "python -m llmexp prepare data=mix 'data.sources.1.path=~/notes/**/*.md'": "tests/data",
    "python -m llmexp data=mix 'data.sources.1.path=~/notes/**/*.md' model=125m": "tests/data",
}
# Synopses, not commands: placeholders (<...>, ..., [options]) stand for what the user fills in.
SYNOPSIS = re.compile(r"<[^>]+>|\.\.\.|\[(--|-m|overrides|key)|\bFILE\b")


def documented_commands() -> list[str]:
    """Every `python -m llmexp ...` / `llmexp ...` command in README.md and docs/*.md, one
    line each (continuations joined, comments and extra spaces removed)."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        lines = [line for b in blocks for line in re.sub(r"\\\n\s*", " ", b).splitlines()]
        lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line in lines:
            line = re.sub(r"\s+#.*$", "", line.strip().removeprefix("$ ")).strip()
            if COMMAND.match(line) and not line.startswith("llmexp/"):
                found.append(" ".join(line.split()))
    return sorted(set(found))


def _runnable(command: str) -> bool:
    return command not in DOCUMENTED_ELSEWHERE and not SYNOPSIS.search(command)


def _argv(command: str) -> list[str]:
    """The command's arguments as llmexp.cli.main takes them (`python -m llmexp.scaling X` is
    `llmexp scaling X`); a run gets dry_run=true so it plans and never trains."""
    words = shlex.split(command)
    head, rest = words[0], words[1:]
    if head == "python":
        module, rest = words[2], words[3:]
        sub = module.split(".", 1)[1] if "." in module else None
        rest = [{"eval": "lm-eval"}.get(sub, sub), *rest] if sub else rest
    if rest and rest[0] in SUBCOMMANDS:
        return rest
    return rest if any(w.startswith("dry_run=") for w in rest) else [*rest, "dry_run=true"]


COMMANDS = documented_commands()
RUNNABLE = [c for c in COMMANDS if _runnable(c)]


def test_every_documented_command_is_run_here_or_mapped_to_its_test():
    unaccounted = [c for c in COMMANDS if not _runnable(c) and c not in DOCUMENTED_ELSEWHERE and not SYNOPSIS.search(c)]
    assert not unaccounted
    stale = sorted(set(DOCUMENTED_ELSEWHERE) - set(COMMANDS))
    assert not stale, f"mapped but no longer documented: {stale}"
    for command, where in DOCUMENTED_ELSEWHERE.items():
        path = ROOT / where.split("::")[0]
        assert path.exists(), (command, where)
        if "::" in where:
            assert f"def {where.split('::')[1]}(" in path.read_text(), where
    assert len(RUNNABLE) >= 20, RUNNABLE


def test_every_subcommand_is_documented_and_answers_help(capsys):
    documented = " ".join(COMMANDS)
    for name in SUBCOMMANDS:
        assert f"llmexp {name}" in documented or f"llmexp.{name}" in documented or name == "lm-eval", name
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code in (0, None), name
        assert capsys.readouterr().out.strip(), name


@pytest.mark.parametrize("command", RUNNABLE)
def test_documented_command_runs(command, tmp_path, monkeypatch, capsys):
    """In-process, offline, small: a run only plans (dry_run=true); a tool runs as written, in a
    scratch folder so its outputs (my_conf/, studies/) land there."""
    monkeypatch.chdir(tmp_path)
    for name in ("sweeps", "conf"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    try:
        main(_argv(command))
    except SystemExit as exit_info:
        assert exit_info.code in (0, None), (command, capsys.readouterr().err[-2000:])
    assert capsys.readouterr().out.strip(), command


def test_the_readme_sweep_command_runs_as_typed(tmp_path):
    """`python -m llmexp sweep ...` once crashed (no llmexp.sweep.cli): a subprocess, as typed."""
    result = subprocess.run([sys.executable, "-m", "llmexp", "sweep", str(ROOT / "sweeps/lr_bayes.yaml"), "--check"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0 and "valid for W&B and llmexp" in result.stdout, result.stderr[-2000:]


def test_config_dir_and_hydra_flags(tmp_path):
    """Hydra's application flags, as in any @hydra.main app (subprocesses, as typed)."""
    conf = tmp_path / "my_conf" / "model"
    conf.mkdir(parents=True)
    (conf / "my_model.yaml").write_text((ROOT / "conf/model/tiny.yaml").read_text().replace("name: tiny", "name: my_model"))

    def llmexp(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "llmexp", *args], capture_output=True, text=True, timeout=120, cwd=cwd)
        assert result.returncode == 0, (args, result.stderr[-2000:])
        return result

    assert "plan: stage=pretrain model=my_model" in llmexp("--config-dir", "./my_conf", "model=my_model", "dry_run=true").stdout
    helped = llmexp("--help").stdout
    assert "== Configuration groups ==" in helped and "optimizer: adafactor, adamw, adamw_wsd, sgd" in helped
    assert "Hydra" in llmexp("--hydra-help").stdout
    job = llmexp("-c", "job", "trainer=debug").stdout  # -c is --cfg (never --config-dir); nothing trains
    assert "micro_batch_size: 4" in job and "max_tokens: null" in job and not (tmp_path / "runs").exists()
    assert llmexp("model=125m", "--cfg", "job", "dry_run=true").stdout.startswith("model:\n  name: 125m")
    assert llmexp("--cfg", "job", "--package", "trainer").stdout.startswith("# @package trainer")
    assert "${" not in llmexp("--cfg", "hydra", "--resolve").stdout.split("sweep:")[0]
    assert "hydra:" in llmexp("--cfg", "all").stdout
    assert "Defaults List" in llmexp("--info", "defaults").stdout
    for shell in ("bash", "zsh"):  # Hydra's zsh completion is its bash one under bashcompinit
        assert "hydra_bash_completion" in llmexp("-sc", f"install={shell}").stdout
    assert "steps" in llmexp("--config-path", str(ROOT / "conf"), "--config-name", "config", "dry_run=true").stdout
    pipeline = llmexp("--cfg", "job", "experiment=chat_pipeline").stdout  # printed, never run
    assert "pipeline:" in pipeline and not (tmp_path / "runs").exists()
    plans = llmexp("-m", "model=7b,13b", "dry_run=true", "hydra.sweep.dir=sweep_out").stdout
    assert plans.count("plan: stage=pretrain") == 2 and "model=7b" in plans and "model=13b" in plans
    assert (tmp_path / "sweep_out" / "multirun.yaml").is_file() and not (tmp_path / "runs").exists()
    ran = llmexp("hydra.run.dir=here/${model.name}", "dry_run=json").stdout
    assert '"model": "tiny"' in ran


def test_hydra_run_dir_is_the_run_folder():
    from llmexp.config.compose import compose_dictconfig

    assert compose_dictconfig(["hydra.run.dir=/tmp/llmexp-x/${model.name}"]).run_dir == "/tmp/llmexp-x/tiny"


def _optuna_args(tmp_path: Path) -> list[str]:
    return ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "optimizer.lr=interval(0.001,0.01)",
            "trainer=debug", "trainer.max_steps=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"]


def test_optuna_sweeper_plugin_is_found(tmp_path):
    """Hydra's Optuna sweeper (optional extra `optuna`) composes with llmexp's config."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = subprocess.run([sys.executable, "-m", "llmexp", "hydra/sweeper=optuna", "--cfg", "hydra"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0 and "OptunaSweeper" in result.stdout, result.stderr[-2000:]


@pytest.mark.slow
def test_optuna_sweeper_trains_and_minimises_val_loss(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = subprocess.run([sys.executable, "-m", "llmexp", *_optuna_args(tmp_path)], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Best value" in result.stdout + result.stderr
    assert (tmp_path / "sweep" / "optimization_results.yaml").is_file()
