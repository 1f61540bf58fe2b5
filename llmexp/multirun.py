"""`python -m llmexp -m ...`: Hydra's own multirun, so its sweepers and launchers (basic,
joblib, submitit for SLURM job arrays) run llmexp jobs. Each job validates, plans and runs
like a single run; its run folder is Hydra's job output folder."""
from __future__ import annotations

import sys
from typing import Sequence

from llmexp.config.compose import PRIMARY_CONFIG, conf_dir, register_schema


def multirun(overrides: Sequence[str], config_dirs: Sequence[str]) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    register_schema()

    @hydra.main(config_path=str(conf_dir()), config_name=PRIMARY_CONFIG, version_base="1.3")
    def job(composed: DictConfig) -> float:
        from llmexp.execute import execute
        from llmexp.config.validate import validate
        from llmexp.plan import derive

        composed.run_dir = composed.run_dir or HydraConfig.get().runtime.output_dir
        cfg = validate(composed)
        summary = execute(cfg, derive(cfg), list(HydraConfig.get().overrides.task))
        return summary["val_loss"]  # what Hydra's optimizing sweepers (optuna, nevergrad) minimise

    searchpath = [f"hydra.searchpath=[{','.join('file://' + d for d in config_dirs)}]"] if config_dirs else []
    sys.argv = [sys.argv[0], "--multirun", *overrides, *searchpath]
    job()
