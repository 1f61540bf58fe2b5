"""What a Hydra multirun of llmexp jobs ended with: a Hydra callback (conf/config.yaml's
hydra.callbacks) that runs in the process that launched the sweep, after every job, whichever
launcher ran them (in this process, joblib workers, submitit jobs), so it reads each job's
outcome from its folders. Its own module: Hydra's callback base is slow to import, and only
Hydra imports this."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import yaml
from hydra.experimental.callback import Callback

from llmexp.outcomes import EXIT_CODES


class SweepSummary(Callback):
    """At the end of a multirun: <sweep dir>/summary.json lists every job that trained (its
    number, overrides, run folder, and status and val_loss from the run's summary.json; a job
    that stopped before writing one, on bad input, is `failed`), one line on stderr names each
    job that did not finish, and the multirun exits with the first such job's code (3 diverged,
    143 preempted, 2 failed); 0 when every job finished."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = [job for job in map(_job_outcome, sweep_dir.glob("**/.hydra/overrides.yaml")) if job]
        if not jobs:  # a dry run: plans only
            return
        jobs.sort(key=lambda job: job["job"])
        (sweep_dir / "summary.json").write_text(json.dumps({"jobs": jobs}, indent=2))
        unfinished = [job for job in jobs if job["status"] != "finished"]
        for job in unfinished:
            print(f"llmexp: sweep job {job['job']} ({' '.join(job['overrides'])}) {job['status']}: {job['message']}",
                  file=sys.stderr, flush=True)
        if unfinished:
            raise SystemExit(EXIT_CODES.get(unfinished[0]["status"], 2))


def _job_outcome(overrides_file: Path) -> Optional[dict[str, Any]]:
    """One multirun job's outcome from its Hydra job folder; None for a dry run."""
    hydra_dir = overrides_file.parent
    if yaml.safe_load((hydra_dir / "config.yaml").read_text()).get("dry_run"):
        return None
    overrides = yaml.safe_load(overrides_file.read_text()) or []
    named = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("run_dir=")]
    run_dir = Path(named[-1]) if named else hydra_dir.parent
    summary_file = run_dir / "summary.json"
    summary = (json.loads(summary_file.read_text()) if summary_file.is_file()
               else {"status": "failed", "message": "stopped before training: see the job's log"})
    return {"job": yaml.safe_load((hydra_dir / "hydra.yaml").read_text())["hydra"]["job"]["num"],
            "overrides": overrides, "run_dir": str(run_dir.resolve()), "status": summary["status"],
            "val_loss": summary.get("val_loss"), "message": summary.get("message", "")}
