"""Launchers from outside: Hydra's submitit launcher runs many runs as a job array (local
executor here, SLURM on a cluster), torchrun starts the ranks of one run, and Lightning reads a
SLURM allocation's environment. llmexp adds no runtime of its own to any of them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, run_cli
from tests.parallel.conftest import LAYOUTS, TINY


def test_submitit_local_launcher_runs_a_sweep_as_a_job_array(tmp_path):
    sweep = tmp_path / "sweep"
    # The jobs start at once: tokenize the shared data first, as scripts/*.sbatch do.
    assert run_cli("prepare", *TINY).returncode == 0
    result = run_cli("-m", "hydra/launcher=local", *TINY, "trainer.max_steps=2", "trainer.val_every=2",
                     "optimizer.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in result.stdout + result.stderr
    lrs = set()
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["steps"] == 2
        lrs.add(yaml.safe_load((sweep / job / "config.yaml").read_text())["optimizer"]["lr"])
    assert lrs == {1e-3, 3e-3}
    assert len([p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]) == 2  # two submitit jobs


def test_slurm_launcher_config_composes_for_hydra(tmp_path):
    # The SLURM preset is a submitit_slurm config: print it without submitting anything.
    result = subprocess.run(
            [sys.executable, "-c", "from hydra import compose, initialize_config_dir\n"
             "from llmexp.config.compose import conf_dir, register_schema\n"
             "register_schema()\n"
             "with initialize_config_dir(config_dir=str(conf_dir()), version_base='1.3'):\n"
             "    c = compose('config', overrides=['hydra/launcher=slurm'], return_hydra_config=True)\n"
             "    l = c.hydra.launcher\n"
             "    print(l._target_, l.tasks_per_node, l.gpus_per_node, l.max_num_timeout)\n"],
            capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "8", "8", "3"]


def test_lightning_reads_the_slurm_environment_for_a_multi_node_fsdp_layout(monkeypatch):
    import lightning as L
    from lightning.fabric.plugins.environments import SLURMEnvironment
    from lightning_utilities.core.rank_zero import rank_zero_only

    import llmexp
    from llmexp.parallel.strategy import lightning_strategy

    # The strategy writes rank 3 into Lightning's process-wide rank_zero_only.rank; put it back
    # afterwards, or every later in-process run of this session would log to dummy loggers.
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)

    # What srun sets for task 3 of a 2-node x 2-task allocation.
    for key, value in {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NUM_NODES": "2",
                       "SLURM_NNODES": "2", "SLURM_NODELIST": "node[1-2]", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
                       "SLURM_NODEID": "1", "SLURM_JOB_ID": "1234", "SLURM_JOB_NAME": "llmexp-fsdp"}.items():
        monkeypatch.setenv(key, value)
    cfg = llmexp.compose([*TINY, *LAYOUTS["fsdp"], "trainer.num_nodes=2", "trainer.micro_batch_size=2"])
    trainer = L.Trainer(accelerator="cpu", devices=2, num_nodes=2, strategy=lightning_strategy(cfg, "cpu"),
                        logger=False, enable_checkpointing=False, enable_progress_bar=False)
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and environment.creates_processes_externally
    assert (trainer.global_rank, trainer.world_size, trainer.node_rank, trainer.local_rank) == (3, 4, 1, 1)
    assert type(trainer.strategy).__name__ == "ModelParallelStrategy"


@pytest.mark.slow  # a 2-process fsdp training: about a minute on 2 cores
def test_torchrun_script_starts_an_fsdp_run(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NPROC": "2", "NNODES": "1", "MASTER_PORT": "29517",
           "PYTHON": sys.executable}
    args = [a for a in TINY if not a.startswith("parallelism.")] + ["parallelism.precision=32", "trainer.max_steps=2",
                                                                      f"run_dir={run_dir}"]
    result = subprocess.run(["bash", "scripts/torchrun_fsdp.sh", *args], capture_output=True, text=True, cwd=REPO,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 2
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["parallelism"]["strategy"] == "fsdp"
