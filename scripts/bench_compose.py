"""How long compose + validate + derive takes (what every config-override test pays):
the first call, then the steady state over many different override sets in one process.

    python scripts/bench_compose.py [--calls 1000]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time

import llmexp

GROUP_CHOICES = [["model=125m"], ["model=1b"], ["model=7b", "tokenizer=bpe_32k"], ["optimizer=adamw_wsd"],
                 ["parallelism=fsdp", "trainer.devices=8", "trainer.global_batch_size=256"], ["logger=tensorboard"], []]
VALUES = [[], ["trainer.micro_batch_size=2"], ["optimizer.lr=1e-4", "trainer.max_steps=50"],
          ["model.n_layers=4"], ["plan.accelerator=h200", "plan.mfu=0.5"], ["parallelism.activation_checkpointing=true"]]


def override_sets(n: int) -> list[list[str]]:
    pairs = itertools.cycle(itertools.product(GROUP_CHOICES, VALUES))
    return [g + v for g, v in itertools.islice(pairs, n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="compositions after the first (default %(default)s)")
    args = parser.parse_args()
    started = time.perf_counter()
    llmexp.derive(llmexp.compose([]))
    first = time.perf_counter() - started
    times = []
    for overrides in override_sets(args.calls):
        t = time.perf_counter()
        llmexp.derive(llmexp.compose(overrides))
        times.append(time.perf_counter() - t)
    print(f"compose + validate + derive: first call {first * 1e3:.0f} ms; then {len(times)} calls over "
          f"{len(GROUP_CHOICES) * len(VALUES)} override sets: median {statistics.median(times) * 1e3:.1f} ms, "
          f"mean {statistics.fmean(times) * 1e3:.1f} ms, total {sum(times):.1f} s")


if __name__ == "__main__":
    main()
