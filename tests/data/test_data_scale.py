"""Scale: preparing and streaming a corpus many times larger than what any process holds."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

# In a fresh process: prepare (clean, then tokenize in 2 worker processes), then draw 50,000
# windows of 1,024 tokens from the mixture across every shard; report the memory of each phase.
SCRIPT = """
import json, resource, sys
import llmexp
from llmexp.data.prepare import prepare_data
from llmexp.data.datamodule import ShardWindows
from llmexp.data.sampler import Mixture, MixtureSampler
rss = lambda who: resource.getrusage(who).ru_maxrss / 1024
cfg = llmexp.compose(sys.argv[1:])
data = prepare_data(cfg, log=lambda m: None)
after_prepare, workers = rss(resource.RUSAGE_SELF), rss(resource.RUSAGE_CHILDREN)
windows = ShardWindows(data.shards("train"), data.dtype, 1024)
mix = Mixture(windows.n_windows, [s.weight for s in data.sources], 0)
n = sum(int(windows[item][0] >= 0) for item in MixtureSampler(mix, start=0, length=50_000))
# Shard pages read through the memory map are page cache (counted in RSS, evictable): measure
# the process's own (anonymous) memory after streaming.
anon = int(next(l for l in open("/proc/self/status") if l.startswith("RssAnon")).split()[1]) / 1024
print(json.dumps({"windows": n, "tokens": sum(s.tokens("train") for s in data.sources),
                  "prepare_mb": after_prepare, "workers_mb": workers, "stream_anon_mb": anon}))
"""


@pytest.mark.slow
def test_large_corpus_prepares_and_streams_with_bounded_memory(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    from bench_data import make_corpus

    mb = 600
    make_corpus(tmp_path / "corpus", mb)
    overrides = ["data=jsonl", f"data.sources.0.path={tmp_path / 'corpus'}", "tokenizer=cl100k_base",
                 f"data.cache_dir={tmp_path / 'cache'}", "data.workers=2", "data.sources.0.clean.exact_dedup=true"]
    out = subprocess.run([sys.executable, "-c", SCRIPT, *overrides], capture_output=True, text=True, cwd=REPO,
                         timeout=3000)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["windows"] == 50_000 and result["tokens"] > 100_000_000
    # The bound, scaled: under 2 GB for 1 GB of text. (A forked worker's peak RSS starts
    # at its parent's at fork time, so workers_mb is an upper bound.)
    assert max(result["prepare_mb"], result["workers_mb"], result["stream_anon_mb"]) < 2 * mb * 1.024, result
    assert result["stream_anon_mb"] < 600, result  # streaming keeps no copy of the data


@pytest.mark.slow
def test_web_benchmark_runs_both_engines_alternating_and_reports_every_ratio(tmp_path):
    """`scripts/bench_data.py --web` (docs/data.md) at a tiny size: both contenders, 1 and 2
    workers, two rounds in alternating order; the script itself asserts equal shards."""
    out = subprocess.run([sys.executable, "scripts/bench_data.py", "--web", "--mb", "1", "--tasks", "2", "--shard-mb", "0.2",
                          "--rounds", "2", "--dir", str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    orders = [line.split(": ", 1)[0] for line in out.stdout.splitlines() if line.startswith("round ")]
    assert orders == ["round 1, 1 worker(s), llmexp then direct", "round 1, 2 worker(s), direct then llmexp",
                      "round 2, 1 worker(s), direct then llmexp", "round 2, 2 worker(s), llmexp then direct"]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    assert result["rounds"] == 2 and result["shards"] >= 2 and result["tokens"] > 100_000
    for w in (1, 2):
        assert result[f"llmexp_{w}w_mb_per_s_per_core"] > 0
        for stage in ("clean_", "tokenize_", ""):
            assert result[f"llmexp_{stage}vs_direct_{w}w"] > 0
