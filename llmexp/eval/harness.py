"""Running lm-eval tasks on llmexp models: `stage=eval`, the in-training callback, and the
results' three destinations (results.json in lm-eval's format, a printed table, a W&B table)."""
from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from llmexp.config.checks import require
from llmexp.config.schema import Config, EvalConfig
from llmexp.eval import TASKS_DIR
from llmexp.io import atomic_write_text
from llmexp.rundir import config_dict, flatten, run_dir_of, write_run_files
from llmexp.tracking import wandb_online


@functools.lru_cache(maxsize=2)
def task_manager(with_lm_eval_tasks: bool = True):
    """lm-eval's task index plus llmexp's offline tasks. Indexing lm-eval's thousands of task
    files takes seconds to tens of seconds, so it is built once per process, and skipped when
    only llmexp's own tasks are asked for."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=with_lm_eval_tasks)


def _manager_for(tasks: Sequence[str]):
    own = task_manager(False)
    return own if set(own.match_tasks(list(tasks))) >= set(tasks) else task_manager(True)


def check_tasks(tasks: Sequence[str]) -> None:
    """Names lm-eval does not know (a task, group or tag; or a task YAML file) fail in one line
    naming eval.tasks, before a model is loaded or a step trained (lm-eval would raise a KeyError
    at the first evaluation)."""
    manager = _manager_for(tasks)
    unknown = [t for t in tasks if not manager.match_tasks([t]) and not Path(t).expanduser().is_file()]
    require(not unknown, "eval.tasks", list(tasks), f"unknown to lm-eval: {', '.join(unknown)} (llmexp's offline "
            "tasks: llmexp_smoke_mc, llmexp_smoke_ppl, llmexp_smoke_gen, tag llmexp_smoke; `lm-eval ls tasks` lists lm-eval's)")


def evaluate(lm, tasks: Sequence[str], num_fewshot: Optional[int] = None, limit: Optional[float] = None,
             seed: int = 1234, log_samples: bool = False) -> dict[str, Any]:
    """lm-eval's `simple_evaluate` on an lm-eval LM (an `LlmexpLM` or any other)."""
    from lm_eval import simple_evaluate

    return simple_evaluate(
        model=lm, tasks=list(tasks), num_fewshot=num_fewshot, limit=limit, task_manager=_manager_for(tasks),
        log_samples=log_samples, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
        fewshot_random_seed=seed, bootstrap_iters=1000,
    )


def scores(results: dict[str, Any], prefix: str = "eval/") -> dict[str, float]:
    """Flat `eval/<task>/<metric>` numbers out of lm-eval's results (stderr left out)."""
    out = {}
    for task, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if not filt or "stderr" in metric or not isinstance(value, (int, float)):
                continue
            name = metric if filt == "none" else f"{metric}[{filt}]"
            out[f"{prefix}{task}/{name}"] = float(value)
    return out


def rows(results: dict[str, Any]) -> list[list[Any]]:
    """[task, metric, value, stderr] rows, for the W&B table."""
    table = []
    for task, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if not filt or "stderr" in metric or not isinstance(value, (int, float)):
                continue
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            table.append([task, metric if filt == "none" else f"{metric}[{filt}]", float(value),
                          float(stderr) if isinstance(stderr, (int, float)) else None])
    return table


def save_results(results: dict[str, Any], folder: Path) -> Path:
    from lm_eval.utils import handle_non_serializable

    path = Path(folder) / "results.json"
    atomic_write_text(path, json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False))
    return path


def summary_table(results: dict[str, Any]) -> str:
    from lm_eval.utils import make_table

    return make_table(results)


def log_wandb_table(run, results: dict[str, Any], step: Optional[int] = None, key: str = "eval/results") -> None:
    import wandb

    table = wandb.Table(columns=["task", "metric", "value", "stderr"], data=rows(results))
    run.log({key: table, **scores(results)}, **({"step": step} if step is not None else {}))


def run_eval(cfg: Config, plan, argv: list[str]) -> dict[str, Any]:
    """`stage=eval`: evaluate `init_from` on the eval group's tasks and intrinsic text; no training."""
    from llmexp.eval.lm import LlmexpLM
    from llmexp.interop.load import load_model
    from llmexp.parallel.strategy import resolve_accelerator

    run_dir = run_dir_of(cfg)
    meta = write_run_files(cfg, run_dir, plan, argv)
    started = time.perf_counter()
    e = cfg.eval
    loaded = load_model(cfg.init_from)
    device = "cuda" if resolve_accelerator(cfg.trainer.accelerator) == "gpu" else "cpu"
    # eval.dtype, not the recipe's training precision: float32 unless asked, as lm-eval's hf model scores
    print(f"evaluating {loaded.path} in {e.dtype} on {device} (eval.dtype)", flush=True)
    L.seed_everything(e.seed, verbose=False)
    lm = LlmexpLM.from_model(loaded.language_model.to(device), loaded.tokenizer, batch_size=e.batch_size,
                             device=device, dtype=e.dtype, max_gen_toks=e.max_gen_toks, seed=e.seed)
    out_dir = run_dir / "eval"
    results: dict[str, Any] = {}
    if e.tasks:
        results = evaluate(lm, e.tasks, e.num_fewshot, e.limit, e.seed, e.log_samples)
        results["config"]["model"] = f"llmexp:{loaded.path}"
        save_results(results, out_dir)
        print(summary_table(results), flush=True)
    intrinsic = None
    if e.intrinsic_text:
        from llmexp.eval.intrinsic import text_metrics, texts_from

        intrinsic = text_metrics(lm, loaded.tokenizer, texts_from(e.intrinsic_text, cfg))
        atomic_write_text(out_dir / "intrinsic.json", json.dumps(intrinsic, indent=2))
        print(f"intrinsic ({e.intrinsic_text}): perplexity {intrinsic['perplexity']:.3f}, "
              f"bits per byte {intrinsic['bits_per_byte']:.4f} over {intrinsic['bytes']:,} bytes, "
              f"bits per character {intrinsic['bits_per_character']:.4f}", flush=True)
    if cfg.logger.name == "wandb":
        _wandb_stage_log(cfg, run_dir, results, intrinsic)
    summary = {
        "status": "finished", "stage": "eval", "run_dir": str(run_dir), "init_from": str(loaded.path),
        "source": loaded.source, "tasks": list(e.tasks), "scores": scores(results) if results else {},
        "intrinsic": intrinsic, "results": str(out_dir / "results.json") if results else None,
        "wall_seconds": time.perf_counter() - started, **{k: meta[k] for k in ("git_commit", "llmexp_version")},
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    print(f"\nevaluated {loaded.path} in {summary['wall_seconds']:.0f} s\n  results  {out_dir}\n  summary  "
          f"{run_dir / 'summary.json'}", flush=True)
    return summary


def _wandb_stage_log(cfg: Config, run_dir: Path, results: dict[str, Any], intrinsic: Optional[dict]) -> None:
    import wandb


    online = wandb_online()
    run = wandb.init(project=cfg.logger.project, entity=cfg.logger.entity, group=cfg.logger.group,
                     tags=list(cfg.logger.tags), name=run_dir.name, dir=str(run_dir),
                     mode="online" if online else "offline", config=flatten(config_dict(cfg)), reinit=True)
    if results:
        log_wandb_table(run, results)
    if intrinsic:
        run.log({f"eval/intrinsic/{k}": intrinsic[k] for k in ("perplexity", "bits_per_byte", "bits_per_character")})
    run.finish()


class EvalCallback(L.Callback):
    """Every `eval.every_n_steps` optimizer steps: the eval group's tasks on the model being
    trained; task scores go to every logger (`eval/<task>/<metric>`), and a table to W&B."""

    def __init__(self, cfg: EvalConfig, tokenizer, out_dir: Path):
        self.cfg, self.tokenizer, self.out_dir = cfg, tokenizer, Path(out_dir)
        self._last_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == 0 or step == self._last_step or step % self.cfg.every_n_steps:
            return
        self._last_step = step
        self.run(trainer, pl_module, step)

    def run(self, trainer: L.Trainer, pl_module, step: int) -> dict[str, Any]:
        from llmexp.eval.lm import LlmexpLM

        model = pl_module.model
        was_training = model.training
        model.eval()
        try:
            if not trainer.is_global_zero:  # one process evaluates; the others wait at the barrier
                results = {}
            else:
                lm = LlmexpLM.from_model(model, self.tokenizer, batch_size=self.cfg.batch_size,
                                         max_gen_toks=self.cfg.max_gen_toks, seed=self.cfg.seed)
                results = evaluate(lm, self.cfg.tasks, self.cfg.num_fewshot, self.cfg.limit, self.cfg.seed)
                save_results(results, self.out_dir / f"step-{step:07d}")
                metrics = {k: v for k, v in scores(results).items() if math.isfinite(v)}
                for logger in trainer.loggers:
                    logger.log_metrics(metrics, step=step)
                    if isinstance(logger, WandbLogger) and logger.experiment is not None:
                        import wandb

                        logger.experiment.log({"eval/results": wandb.Table(columns=["task", "metric", "value", "stderr"],
                                                                           data=rows(results))}, step=step)
                print(f"\nstep {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()), flush=True)
            trainer.strategy.barrier("llmexp-eval")
            return results
        finally:
            model.train(was_training)


def eval_callback(cfg: Config, run_dir: Path, tokenizer) -> Optional[EvalCallback]:
    """The in-training callback when `eval.every_n_steps` is set (build.py adds it)."""
    if not cfg.eval.every_n_steps or not cfg.eval.tasks:
        return None
    return EvalCallback(cfg.eval, tokenizer, run_dir / "eval")

