"""The cleaning engine: HF datatrove pipelines over every source of a mix, run by its
LocalPipelineExecutor (one machine, `data.workers` processes) or SlurmPipelineExecutor (array
jobs across nodes), then each source's kept documents split into train/validation parts.

Stages, each a datatrove executor depending on the one before (all under <cache>/data/work-<key>/):
    clean-<source>   SourceReader -> the source's steps (clean.py) -> filtered/<source>/<rank>.jsonl.gz
    minhash-1..4     (data.minhash_dedup) signatures, LSH buckets, clusters, removal: across all
                     sources of the mix -> deduped/<source>/<rank>.jsonl.gz
A task that finishes is marked complete by datatrove, so a killed prepare resumes with the tasks
(shards of the input) that did not finish. The per-step counts and removed samples each task
writes (steps.Reviewed) become the source's clean/report.json; the work folder is removed once
every source of the mix has its parts.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, List

from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from loguru import logger

from llmexp.config.schema import DataConfig, SourceConfig
from llmexp.data.clean import clean_steps
from llmexp.data.sources import DataError, source_name
from llmexp.data.steps import Reviewed, SourceReader


class Submitted(DataError):
    """The cleaning runs as SLURM jobs: preparation continues when `llmexp prepare` runs again after them."""


@contextlib.contextmanager
def datatrove_logs_to_files():
    """datatrove logs each task to <logging_dir>/logs/ and to stderr: keep only the files, so
    prepare's console shows llmexp's report, not a dozen lines per task and step."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        try:
            logger.remove()
            yield
        finally:
            logger.remove()  # its sinks point at devnull, closed next


class QuietLocalExecutor(LocalPipelineExecutor):
    def _run_for_rank(self, rank, local_rank=0, node_rank=-1):  # also in worker processes
        with datatrove_logs_to_files():
            return super()._run_for_rank(rank, local_rank, node_rank)


def make_executor(data: DataConfig, pipeline: list, tasks: int, logging_dir: Path, name: str, depends=None):
    """datatrove executor of one stage, per data.executor."""
    if data.executor == "local":
        workers = tasks if data.workers == -1 else min(data.workers, tasks)
        return QuietLocalExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir),
                                  depends=depends, skip_completed=True)
    in_venv = sys.prefix != sys.base_prefix  # the jobs run this same interpreter's environment
    return SlurmPipelineExecutor(
        pipeline, tasks=tasks, time=data.slurm_time, partition=data.slurm_partition,
        cpus_per_task=data.slurm_cpus_per_task, mem_per_cpu_gb=data.slurm_mem_per_cpu_gb, workers=data.workers,
        job_name=f"llmexp-{name}", logging_dir=str(logging_dir), depends=depends, skip_completed=True,
        sbatch_args=dict(data.slurm_sbatch_args), slurm_logs_folder=str(logging_dir / "slurm_logs"),
        env_command=f"source {sys.prefix}/bin/activate" if in_venv else None,
    )


class FilteredReader(JsonlReader):
    """datatrove's reader fails on an empty folder; here cleaning may have removed everything
    (then the report says which steps did)."""

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if self.data_folder.list_files(glob_pattern=self.glob_pattern, recursive=self.recursive):
            yield from super().run(data, rank, world_size)


class MixCleaning:
    """The datatrove stages that clean `sources` (with dedup across them when asked) in `work`."""

    def __init__(self, sources: List[SourceConfig], data: DataConfig, work: Path):
        self.sources, self.data, self.work = sources, data, work
        self.names = [source_name(s) for s in sources]
        # Output folders sort in mix order: MinHash keeps the copy of a duplicate read first,
        # so an earlier source of the mix wins over a later one.
        self.slots = [f"{i:03d}-{name}" for i, name in enumerate(self.names)]
        self.executors = self._build()

    def report_dir(self, name: str) -> Path:
        return self.work / "reports" / name

    def output_dir(self) -> Path:
        return self.work / ("deduped" if self.data.minhash_dedup else "filtered")

    def _build(self) -> list:
        data, work, executors = self.data, self.work, []
        for source, name, slot in zip(self.sources, self.names, self.slots):
            pipeline = [SourceReader(source, slot, data.on_bad_record, str(self.report_dir(name))),
                        *clean_steps(source.clean, str(self.report_dir(name))),
                        JsonlWriter(str(work / "filtered"), output_filename="${slot}/${rank}.jsonl.gz")]
            executors.append(make_executor(data, pipeline, data.tasks, work / "logs" / f"clean-{name}", f"clean-{name}",
                                           depends=executors[-1] if executors else None))
        if data.minhash_dedup:
            executors += self._minhash(executors[-1])
        return executors

    def _minhash(self, depends) -> list:
        """datatrove's four MinHash stages over the filtered documents of every source."""
        d, work = self.data, self.work
        config = MinhashConfig(n_grams=d.minhash_ngram, num_buckets=d.minhash_buckets,
                               hashes_per_bucket=d.minhash_hashes_per_bucket)
        tasks = d.tasks * len(self.sources)  # at most one filtered file per (source, task)
        mh = work / "minhash"

        def reader():
            return FilteredReader(str(work / "filtered"), glob_pattern="*/*.jsonl.gz", add_file_path=False)

        samples = max(s.clean.review_samples for s in self.sources)
        stages = [
            ([reader(), MinhashDedupSignature(str(mh / "signatures"), config=config)], tasks),
            ([MinhashDedupBuckets(str(mh / "signatures"), str(mh / "buckets"), config=config)], config.num_buckets),
            ([MinhashDedupCluster(str(mh / "buckets"), str(mh / "remove_ids"), config=config)], 1),
            ([reader(), Reviewed("minhash_dedup", MinhashDedupFilter(str(mh / "remove_ids")), str(work / "reports" / "_mix"), samples),
              JsonlWriter(str(work / "deduped"), output_filename="${slot}/${rank}.jsonl.gz")], tasks),
        ]
        executors = []
        for i, (pipeline, n) in enumerate(stages, 1):
            executors.append(make_executor(d, pipeline, n, work / "logs" / f"minhash-{i}", f"minhash-{i}",
                                           depends=executors[-1] if executors else depends))
        return executors

    def complete(self) -> bool:
        return not self.executors[-1].get_incomplete_ranks(skip_completed=True)

    def run(self, log: Callable[[str], None]) -> None:
        if self.complete():
            return
        submitted = self.work / "submitted.json"
        if self.data.executor == "slurm":
            if submitted.is_file():
                raise Submitted(f"the cleaning jobs {json.loads(submitted.read_text())} have not finished (squeue shows them; "
                                f"task logs: {self.work / 'logs'}); if they failed, delete {submitted} and prepare again "
                                "to resubmit the unfinished tasks")
            self.executors[-1].run()  # sbatch of every stage, each depending on the one before
            ids = [e.job_id for e in self.executors]
            submitted.write_text(json.dumps(ids))
            raise Submitted(f"cleaning submitted to SLURM as jobs {ids} (logs: {self.work / 'logs'}); "
                            "run the same `llmexp prepare` again when they finish to split and tokenize")
        log(f"  cleaning {', '.join(self.names)} on datatrove: {self.data.tasks} task(s) per source, "
            f"{self.data.workers} worker(s){', MinHash dedup across the mix' if self.data.minhash_dedup else ''} "
            f"(task logs: {self.work / 'logs'})")
        try:
            with datatrove_logs_to_files():
                self.executors[-1].run()
        except DataError:
            raise
        except Exception as err:  # a task failed: datatrove keeps its traceback in the task log
            raise DataError(f"cleaning failed ({type(err).__name__}: {err}); task logs: {self.work / 'logs'}") from None
        if not self.complete():
            raise DataError(f"cleaning left unfinished tasks; task logs: {self.work / 'logs'}")

    # ------------------------------------------------------------ results

    def documents(self, name: str):
        """The kept documents of one source, tasks in rank order."""
        for path in sorted((self.output_dir() / self.slots[self.names.index(name)]).glob("*.jsonl.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                for line in f:
                    yield json.loads(line)["text"]

    def steps(self, source: SourceConfig, name: str) -> List[dict]:
        """The source's report: one entry per step, summed over tasks, with removed samples."""
        folders = sorted(p for p in self.report_dir(name).iterdir() if p.is_dir())
        if self.data.minhash_dedup:
            folders.append(self.work / "reports" / "_mix" / "minhash_dedup")
        steps = []
        for folder in folders:
            step = {"step": folder.name.split("-", 1)[1] if folder.name[:2].isdigit() else folder.name,
                    "docs_in": 0, "docs_out": 0, "bytes_in": 0, "bytes_out": 0, "removed": []}
            for part in sorted(folder.glob("*.json")):
                counts = json.loads(part.read_text()).get(name)
                if not counts:
                    continue
                for key in ("docs_in", "docs_out", "bytes_in", "bytes_out"):
                    step[key] += counts[key]
                step["removed"] = (step["removed"] + counts["removed"])[: source.clean.review_samples]
                if "bad_records" in counts:
                    step["bad_records"] = step.get("bad_records", 0) + counts["bad_records"]
                    step["bad_examples"] = (step.get("bad_examples", []) + counts["bad_examples"])[:5]
            steps.append(step)
        return steps

    def remove(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
