"""The data engine: HF datatrove pipelines over every source of a mix, run by its
LocalPipelineExecutor (one machine, `data.workers` processes) or SlurmPipelineExecutor (array
jobs across nodes). Cleaning comes first; prepare.py then splits each source's kept documents
into train/validation parts (and trains a BPE on them, if asked); tokenization is the last stage.

Stages, each a datatrove executor depending on the one before (all under <cache>/data/work-<key>/):
    clean-<source>   SourceReader -> the source's steps (clean.py) -> filtered/<source>/<rank>.jsonl.gz
    minhash-1..4     (data.minhash_dedup) signatures, LSH buckets, clusters, removal: across all
                     sources of the mix -> deduped/<source>/<rank>.jsonl.gz
and, after the split (under <cache>/data/tokenize-<key>/):
    tokenize         PartReader -> ShardWriter: one task per cleaned part, writing that part's
                     token shard and sidecar (shards.write_shard), so no two tasks share a file
A task that finishes is marked complete by datatrove, so a killed prepare resumes with the tasks
(shards of the input, or parts) that did not finish. The per-step counts and removed samples each
task writes (steps.Reviewed) become the source's clean/report.json; a work folder is removed once
its results (the parts, or the shard indexes) are written.
"""
from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, List

from datatrove.data import Document, DocumentsPipeline
from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader, ParquetReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.batching import batched
from datatrove.utils.typeshelper import Languages
from loguru import logger

from llmexp.config.schema import DataConfig, SourceConfig
from llmexp.data.clean import clean_steps
from llmexp.data.shards import iter_part_texts, shard_done, shard_path, write_shard
from llmexp.data.sources import DataError, source_name
from llmexp.data.steps import Reviewed, SourceReader
from llmexp.data.words import word_tokenizer
from llmexp.io import atomic_write_text


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


def run_stages(stages: list, data: DataConfig, work: Path, what: str, then: str, log: Callable[[str], None], message: str) -> None:
    """Run `stages` (executors, each depending on the one before) unless datatrove marks every
    task of the last complete.
    Locally that is now; on SLURM the jobs are submitted once and Submitted is raised, and the
    next prepare finds them complete (or says they still run)."""
    last = stages[-1]
    if not last.get_incomplete_ranks(skip_completed=True):
        return
    submitted = work / "submitted.json"
    if data.executor == "slurm":
        if submitted.is_file():
            raise Submitted(f"the {what} jobs {json.loads(submitted.read_text())} have not finished (squeue shows them; "
                            f"task logs: {work / 'logs'}); if they failed, delete {submitted} and prepare again "
                            "to resubmit the unfinished tasks")
        last.run()  # sbatch of every stage, each depending on the one before
        ids = [stage.job_id for stage in stages]
        submitted.write_text(json.dumps(ids))
        raise Submitted(f"{what} submitted to SLURM as jobs {ids} (logs: {work / 'logs'}); "
                        f"run the same `llmexp prepare` again when they finish to {then}")
    log(message)
    try:
        with datatrove_logs_to_files():
            last.run()
    except DataError:
        raise
    except Exception as err:  # a task failed: datatrove keeps its traceback in the task log
        raise DataError(f"{what} failed ({type(err).__name__}: {err}); task logs: {work / 'logs'}") from None
    if last.get_incomplete_ranks(skip_completed=True):
        raise DataError(f"{what} left unfinished tasks; task logs: {work / 'logs'}")


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
            ([reader(), MinhashDedupSignature(str(mh / "signatures"), config=config, language=word_tokenizer(Languages.english))], tasks),
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

    def run(self, log: Callable[[str], None]) -> None:
        run_stages(self.executors, self.data, self.work, "cleaning", "split and tokenize", log,
                   f"  cleaning {', '.join(self.names)} on datatrove: {self.data.tasks} task(s) per source, "
                   f"{self.data.workers} worker(s){', MinHash dedup across the mix' if self.data.minhash_dedup else ''} "
                   f"(task logs: {self.work / 'logs'})")

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


# ---------------------------------------------------------------- tokenization

class PartReader(ParquetReader):
    """Cleaned parts (paths_file: one a line, relative to the data root) -> documents; task
    `rank` reads parts rank, rank + tasks, ... A part whose shard is already complete (an earlier
    run finished it) is not read again. Every document is kept, also an empty one (datatrove's
    reader drops those), so that a shard holds exactly its part."""

    name = "📒 cleaned parts"

    def __init__(self, root: str, paths_file: str, tokenizer_name: str):
        super().__init__(root, paths_file=paths_file)
        self.root, self.tokenizer_name = Path(root), tokenizer_name

    def read_file(self, filepath: str):
        if shard_done(shard_path(self.root / filepath, self.tokenizer_name)) is not None:
            return
        for i, text in enumerate(t for texts in iter_part_texts(self.root / filepath) for t in texts):
            yield Document(text=text, id=f"{filepath}:{i}", metadata={"part": filepath})


class ShardWriter(PipelineStep):
    """Documents, grouped by the part they came from -> one llmexp token shard per part
    (shards.write_shard: same bytes, checksum and sidecar as every shard llmexp reads)."""

    name = "🔢 llmexp shards"
    type = "💽 - WRITER"

    def __init__(self, root: str, tokenizer_dir: str, tokenizer_name: str):
        super().__init__()
        self.root, self.tokenizer_dir, self.tokenizer_name = Path(root), tokenizer_dir, tokenizer_name

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        from llmexp.tokenizers import Tokenizer  # in the task's process

        tok = Tokenizer.load(Path(self.tokenizer_dir))
        for part, docs in itertools.groupby(data, key=lambda doc: doc.metadata["part"]):
            batches = ([doc.text for doc in batch] for batch in batched(docs, 256))
            meta = write_shard(batches, shard_path(self.root / part, self.tokenizer_name), tok)
            self.stat_update("shards")
            self.stat_update("tokens", value=meta["tokens"])


class MixTokenization:
    """One datatrove stage: every part in `parts` (paths relative to `root`) tokenized into its
    shard by the tokenizer saved in <work>/tokenizer, one part per task."""

    def __init__(self, parts: List[str], root: Path, tokenizer, data: DataConfig, work: Path):
        self.data, self.work, self.parts = data, work, parts
        work.mkdir(parents=True, exist_ok=True)
        paths_file = work / "parts.txt"
        if not paths_file.is_file():  # the task numbering a resumed run must keep
            atomic_write_text(paths_file, "".join(p + "\n" for p in parts))
        if not (work / "tokenizer" / "tokenizer.json").is_file():
            tokenizer.save(work / "tokenizer")  # what the tasks load
        pipeline = [PartReader(str(root), str(paths_file), tokenizer.name),
                    ShardWriter(str(root), str(work / "tokenizer"), tokenizer.name)]
        self.executor = make_executor(data, pipeline, len(parts), work / "logs" / "tokenize", "tokenize")

    def run(self, log: Callable[[str], None]) -> None:
        workers = len(self.parts) if self.data.workers == -1 else min(self.data.workers, len(self.parts))
        run_stages([self.executor], self.data, self.work, "tokenization", "write the shard indexes", log,
                   f"  tokenizing {len(self.parts)} part(s) on datatrove: one task per part, {workers} worker(s) "
                   f"(task logs: {self.work / 'logs'})")

    def remove(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
