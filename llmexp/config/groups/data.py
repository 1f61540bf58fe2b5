"""data group: a mix of weighted sources, each with its own cleaning steps (llmexp/data/)."""
from __future__ import annotations

import glob
import os
import re
import string
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional

from omegaconf import MISSING

from llmexp.config.checks import choice, finite, in_range, positive, require


@dataclass
class CleanConfig:
    """Cleaning steps of one source, applied in this order; each is reported (documents and
    bytes in/out). Defaults do nothing but drop empty documents."""

    strip_html: bool = False  # tags, scripts and styles removed, entities unescaped
    unicode_normalize: Optional[str] = choice(Literal["NFC", "NFKC", "NFD", "NFKD"], None)
    mask_emails: bool = False  # -> <EMAIL>
    mask_ips: bool = False  # IPv4 and IPv6 addresses -> <IP>
    min_chars: int = 1
    max_chars: Optional[int] = None
    min_words: int = 0
    max_symbol_ratio: Optional[float] = None  # share of characters that are neither letters, digits nor spaces
    max_repeated_line_fraction: Optional[float] = None  # share of non-empty lines repeating an earlier line
    exact_dedup: bool = False  # drop documents whose text was already seen (whitespace-normalized)
    near_dedup: bool = False  # MinHash/LSH (datasketch): drop documents similar to one already kept
    near_dedup_threshold: float = 0.8  # estimated Jaccard similarity of word n-gram sets
    near_dedup_num_perm: int = 128
    near_dedup_ngram: int = 5
    # Web-data filters, run as datatrove steps (llmexp/data/steps.py) after masking, before dedup;
    # each reports documents/bytes in/out and keeps `review_samples` removed documents (clean/report.json).
    extract_main_text: bool = False  # HTML -> main content (trafilatura): navigation, footers, titles dropped
    mask_phones: bool = False  # phone numbers -> <PHONE> (libphonenumber's matcher, any region with a + prefix, else phone_region)
    phone_region: str = "US"  # region assumed for numbers written without a country code
    url_blocklist: Optional[str] = None  # file of blocked domains/URLs, one a line ('#' comments); reads url_field
    url_field: str = "url"  # jsonl/parquet/hf record field holding the document's URL
    languages: Optional[List[str]] = None  # keep documents py3langid labels as one of these ISO 639-1 codes
    language_threshold: float = 0.65  # minimum py3langid probability of the kept language
    # drop documents scored above toxicity_threshold; None: no toxicity filter
    toxicity: Optional[str] = choice(Literal["profanity_check", "detoxify"], None)
    toxicity_threshold: float = 0.5  # profanity_check: offensive probability; detoxify: its `toxicity` score
    detoxify_model: str = "original"  # detoxify checkpoint (original | unbiased | multilingual); downloaded on first use
    gopher_quality: Optional[Dict[str, Any]] = None  # datatrove GopherQualityFilter thresholds ({}: its defaults); None: off
    c4_quality: Optional[Dict[str, Any]] = None  # datatrove C4QualityFilter options ({}: its defaults); None: off
    fineweb_quality: Optional[Dict[str, Any]] = None  # datatrove FineWebQualityFilter thresholds ({}: its defaults); None: off
    review_samples: int = 5  # removed documents kept per step for review


@dataclass
class SourceConfig:
    """One source of a data mix."""

    kind: str = choice(Literal["embedded", "text", "jsonl", "parquet", "hf"], "embedded")
    name: Optional[str] = None  # in logs and metrics (data/tokens_<name>); None: the kind
    weight: float = 1.0  # share of training tokens drawn from this source (normalised over the mix)
    path: Optional[str] = None  # file, folder or glob (text, jsonl, parquet); hf: data files or a save_to_disk folder
    text_field: str = "text"  # jsonl, parquet, hf: the field holding the document
    template: Optional[str] = None  # instead of text_field: e.g. "{title}\n\n{body}" over several fields
    dataset: Optional[str] = None  # hf: hub name (online) or a builder for local files (json, parquet, csv, text)
    subset: Optional[str] = None  # hf: the dataset's configuration name
    split: str = "train"  # hf: which split to read
    revision: Optional[str] = None  # hf: hub revision (part of the cache key)
    streaming: bool = False  # hf hub: stream instead of downloading the whole dataset first
    clean: CleanConfig = field(default_factory=CleanConfig)


@dataclass
class DataConfig:
    name: str = MISSING
    sources: List[SourceConfig] = field(default_factory=list)
    val_fraction: float = 0.05  # fraction of documents held out for validation, per source
    split_seed: int = 1234
    # a source runs out of windows: repeat (another epoch, with a warning) | stop
    on_exhausted: str = choice(Literal["repeat", "stop"], "repeat")
    shard_bytes: int = 32_000_000  # text bytes per shard (one tokenization task each)
    verify_checksums: bool = False  # sha256 of every shard at load (sizes are always checked)
    cache_dir: Optional[str] = None  # None: $LLMEXP_CACHE or ~/.cache/llmexp
    # The engine (datatrove, llmexp/data/engine.py): read -> clean/filter -> MinHash -> parts -> tokenize.
    # A broken record/file stops prepare (error), or is skipped and counted (skip).
    on_bad_record: str = choice(Literal["skip", "error"], "error")
    # datatrove's LocalPipelineExecutor or SlurmPipelineExecutor
    executor: str = choice(Literal["local", "slurm"], "local")
    tasks: int = 1  # cleaning tasks per source (files are spread over them; the unit of resumption)
    workers: int = 1  # tasks run at once, cleaning and tokenizing (local: processes; slurm: array jobs, -1: all)
    slurm_partition: Optional[str] = None  # executor=slurm: required
    slurm_time: str = "24:00:00"
    slurm_cpus_per_task: int = 1
    slurm_mem_per_cpu_gb: int = 2
    slurm_sbatch_args: Dict[str, str] = field(default_factory=dict)  # extra #SBATCH lines, e.g. {account: proj}
    minhash_dedup: bool = False  # near-duplicates across all sources of the mix (datatrove MinHash, 4 stages)
    minhash_ngram: int = 5  # word n-grams per shingle
    minhash_buckets: int = 14  # LSH bands; with hashes_per_bucket=8 catches Jaccard >= ~0.75 pairs
    minhash_hashes_per_bucket: int = 8

# llmexp's filter key -> the datatrove filter class its options are passed to
QUALITY_FILTERS = {"gopher_quality": "GopherQualityFilter", "c4_quality": "C4QualityFilter",
                   "fineweb_quality": "FineWebQualityFilter"}


def check_data(d: DataConfig) -> None:
    """Sources name files that exist (the only files this pass looks at: their paths)."""
    require(len(d.sources) > 0, "data.sources", [], "needs at least one source")
    names = []
    for i, src in enumerate(d.sources):
        key = f"data.sources.{i}"
        finite(f"{key}.weight", src.weight)
        require(src.weight > 0, f"{key}.weight", src.weight, "must be > 0 (leave the source out instead of weighting it 0)")
        names.append(src.name or src.kind)
        # The name becomes a cache folder and a metric name (data/tokens_<name>).
        require(re.fullmatch(r"[A-Za-z0-9_.-]+", names[-1]) is not None, f"{key}.name", src.name,
                "letters, digits, '_', '.' and '-' only")
        require(names.count(names[-1]) == 1, f"{key}.name", src.name, f"{names[-1]!r} is taken: give each source a unique name")
        check_clean(f"{key}.clean", src.clean)
        if src.kind == "embedded":  # Python's own pydoc_data: a path or dataset here would be ignored
            for field in ("path", "dataset", "template"):
                require(getattr(src, field) is None, f"{key}.{field}", getattr(src, field),
                        f"kind=embedded reads Python's pydoc_data; to read your data set {key}.kind=text|jsonl|"
                        "parquet|hf, or pick data=jsonl (see --help)")
            continue
        if src.template is not None:
            fields = [f for _, f, _, _ in string.Formatter().parse(src.template) if f]
            require(bool(fields), f"{key}.template", src.template, "needs at least one {field}")
        else:
            require(bool(src.text_field), f"{key}.text_field", src.text_field, "name the field holding the text")
        if src.kind == "hf":
            require(bool(src.dataset or src.path), f"{key}.dataset", src.dataset,
                    "kind=hf needs a hub name, or a path (data files or a save_to_disk folder)")
            if not src.path:
                continue
        require(bool(src.path), f"{key}.path", src.path, f"required for kind={src.kind}")
        pattern = os.path.expanduser(src.path)
        found = os.path.exists(pattern) or bool(glob.glob(pattern, recursive=True))
        require(found, f"{key}.path", src.path, "no such file, folder or glob match")
    in_range("data.val_fraction", d.val_fraction, 0.0, 0.5, low_open=True, high_open=True)
    require(0 <= d.split_seed < 2**32, "data.split_seed", d.split_seed, "must be in [0, 2^32)")
    positive("data.shard_bytes", d.shard_bytes)
    _check_engine(d)


def _check_engine(d: DataConfig) -> None:
    positive("data.tasks", d.tasks)
    require(d.workers == -1 or d.workers > 0, "data.workers", d.workers, "must be > 0, or -1 for all tasks at once")
    if d.executor == "slurm":
        require(bool(d.slurm_partition), "data.slurm_partition", d.slurm_partition, "executor=slurm needs a partition")
        positive("data.slurm_cpus_per_task", d.slurm_cpus_per_task)
        positive("data.slurm_mem_per_cpu_gb", d.slurm_mem_per_cpu_gb)
    for name in ("minhash_ngram", "minhash_buckets", "minhash_hashes_per_bucket"):
        positive(f"data.{name}", getattr(d, name))


def check_clean(key: str, c: CleanConfig) -> None:
    require(c.min_chars >= 0, f"{key}.min_chars", c.min_chars, "must be >= 0")
    require(c.min_words >= 0, f"{key}.min_words", c.min_words, "must be >= 0")
    if c.max_chars is not None:
        require(c.max_chars >= max(1, c.min_chars), f"{key}.max_chars", c.max_chars, f"must be >= min_chars={c.min_chars}")
    for name in ("max_symbol_ratio", "max_repeated_line_fraction"):
        value = getattr(c, name)
        if value is not None:
            in_range(f"{key}.{name}", value, 0.0, 1.0)
    in_range(f"{key}.near_dedup_threshold", c.near_dedup_threshold, 0.0, 1.0, low_open=True, high_open=True)
    require(c.near_dedup_num_perm >= 16, f"{key}.near_dedup_num_perm", c.near_dedup_num_perm, "must be >= 16")
    positive(f"{key}.near_dedup_ngram", c.near_dedup_ngram)
    _check_filters(key, c)


def _check_filters(key: str, c: CleanConfig) -> None:
    """The web-data filters of one source (datatrove steps)."""
    if c.url_blocklist is not None:
        require(os.path.isfile(os.path.expanduser(c.url_blocklist)), f"{key}.url_blocklist", c.url_blocklist,
                "no such file (one blocked domain or URL a line)")
    require(bool(c.url_field), f"{key}.url_field", c.url_field, "name the field holding the URL")
    if c.languages is not None:
        require(len(c.languages) > 0 and all(re.fullmatch(r"[a-z]{2,3}", x) for x in c.languages),
                f"{key}.languages", c.languages, "ISO 639-1 codes such as [en, de]")
    in_range(f"{key}.language_threshold", c.language_threshold, 0.0, 1.0)
    in_range(f"{key}.toxicity_threshold", c.toxicity_threshold, 0.0, 1.0, low_open=True, high_open=True)
    require(c.review_samples >= 0, f"{key}.review_samples", c.review_samples, "must be >= 0")
    for name, cls in QUALITY_FILTERS.items():
        options = getattr(c, name)
        if options:  # thresholds are the datatrove filter's own keyword arguments (imported only then)
            import inspect

            import datatrove.pipeline.filters as filters

            allowed = [p for p in inspect.signature(getattr(filters, cls)).parameters if p not in ("exclusion_writer", "language")]
            unknown = [k for k in options if k not in allowed]
            require(not unknown, f"{key}.{name}.{unknown[0] if unknown else ''}", options.get(unknown[0]) if unknown else None,
                    f"not a {cls} option (options: {', '.join(allowed)})")
