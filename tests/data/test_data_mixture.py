"""Mixture sampling: realized proportions match the weights, the order is a pure function of
(seed, position) so it is deterministic and resumes exactly, sources repeat by epochs."""
from __future__ import annotations

import numpy as np

from llmexp.data.datamodule import ShardWindows, TokenDataModule
from llmexp.data.prepare import prepare_data
from llmexp.data.sampler import Mixture, MixtureSampler, permute
from tests.data.conftest import config, corpus, jsonl_source, write_jsonl

WEIGHTS = [0.6, 0.3, 0.07, 0.03]
WINDOWS = [5000, 40, 700, 3]


def test_realized_proportions_match_the_weights():
    mix = Mixture(WINDOWS, [w * 7 for w in WEIGHTS], seed=11)  # weights need not sum to 1
    for n in (1_000, 12_345, 200_000):
        src, _, _ = mix.draws(np.arange(n))
        share = np.bincount(src, minlength=4) / n
        # within 4 standard deviations of iid sampling (the stratified order does better)
        assert np.all(np.abs(share - WEIGHTS) <= 4 * np.sqrt(np.array(WEIGHTS) * (1 - np.array(WEIGHTS)) / n))
        assert np.array_equal(mix.counts(n), np.bincount(src, minlength=4))


def test_order_is_deterministic_for_a_seed_and_resumes_exactly():
    mix = lambda seed: Mixture(WINDOWS, WEIGHTS, seed)  # noqa: E731
    full = list(MixtureSampler(mix(5), start=0, length=9000))
    assert full == list(MixtureSampler(mix(5), start=0, length=9000))
    assert full != list(MixtureSampler(mix(6), start=0, length=9000))
    for stop in (1, 4095, 4096, 6001):  # restart anywhere, in a fresh process-like object
        assert list(MixtureSampler(mix(5), start=stop, length=9000 - stop)) == full[stop:]
    r0 = list(MixtureSampler(mix(5), start=0, length=4500, rank=0, world_size=2))
    r1 = list(MixtureSampler(mix(5), start=0, length=4500, rank=1, world_size=2))
    assert r0 == full[0::2] and r1 == full[1::2]


def test_each_epoch_of_a_source_visits_every_window_once():
    mix = Mixture(WINDOWS, WEIGHTS, seed=3)
    src, j, window = mix.draws(np.arange(60_000))
    for s in range(4):
        for e in range(int(j[src == s].max() // WINDOWS[s])):
            in_epoch = window[(src == s) & (j // WINDOWS[s] == e)]
            assert sorted(in_epoch.tolist()) == list(range(WINDOWS[s]))
    for n in (1, 2, 7, 1 << 20):
        assert np.array_equal(np.sort(permute(np.arange(min(n, 5000)), n, [1, 2, 3, 4])) < n, np.ones(min(n, 5000), bool))


def test_first_repeat_is_where_a_source_runs_out():
    mix = Mixture(WINDOWS, WEIGHTS, seed=3)
    k, s = mix.first_repeat()
    assert s == 3  # 3 windows at 3%: the first to run out
    src, _, window = mix.draws(np.arange(k + 1))
    pairs = list(zip(src[:k].tolist(), window[:k].tolist()))
    assert len(set(pairs)) == len(pairs)  # nothing repeated before k
    assert (int(src[k]), int(window[k])) in set(pairs)  # and sample k repeats one


def test_datamodule_serves_the_mix_from_shards(tmp_path, quiet):
    a = write_jsonl(tmp_path / "a.jsonl", corpus(1, 200))
    b = write_jsonl(tmp_path / "b.jsonl", corpus(2, 60))
    data = prepare_data(config(tmp_path, [jsonl_source(a, "a", 0.8), jsonl_source(b, "b", 0.2)], shard_bytes=6_000),
                        log=quiet)
    dm = TokenDataModule(data, seq_len=32, micro_batch_size=4, total_micro_batches=100, val_batches=5, seed=1,
                         global_batch_size=4)
    windows = dm.train_windows
    flat = [data.sources[s].shards("train") for s in range(2)]
    # window w of a source is the w-th full window of its shards, shard boundaries respected
    for s in range(2):
        tokens_by_shard = [np.fromfile(p, dtype=data.dtype) for p, _ in flat[s]]
        expected = [t[i * 32: i * 32 + 33] for t in tokens_by_shard for i in range((len(t) - 1) // 32)]
        assert windows.n_windows[s] == len(expected)
        for w in (0, len(expected) // 2, len(expected) - 1):
            assert windows[(s, w)].tolist() == expected[w].tolist()
    assert dm.mixture.B == 1024 and dm.source_tokens(3 * 1024) == {"a": 3 * 819 * 32, "b": 3 * 205 * 32}  # whole blocks: exact
    drawn = dm.source_tokens(1000)
    assert sum(drawn.values()) == 1000 * 32 and abs(drawn["a"] / 32000 - 0.8) < 0.05
    val = ShardWindows(data.shards("val"), data.dtype, 32).interleaved(6)
    assert {s for s, _ in val} == {0, 1}  # validation sees every source
    report = dm.mixture_report(steps=100)
    assert "a: weight 0.800" in report and "epochs" in report
    dm.on_exhausted = "stop"
    k, _ = dm.mixture.first_repeat()
    assert dm.supported_steps() == k // 4
