"""`python -m llmexp.sweep SWEEP.yaml [--count N] [--dir DIR]`: a W&B sweep file run offline."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from llmexp.config.errors import OneLineParser, positive_count, positive_number
from llmexp.sweep.errors import SweepError


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = OneLineParser(
        prog="python -m llmexp.sweep",
        description="Validate a W&B sweep file against W&B's schema and llmexp's, then run it offline on "
        "W&B's sweep engine (runs one at a time, W&B offline). Run the same command again to continue "
        "a sweep that was interrupted.",
    )
    parser.add_argument("sweep", help="a sweep YAML in W&B's format, e.g. sweeps/lr_bayes.yaml")
    parser.add_argument("--count", type=positive_count, help="runs the sweep should hold in total (grid: all by default)")
    parser.add_argument("--dir", help="the sweep folder (default: runs/sweeps/<file name>)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random and Bayesian suggestions (default 0)")
    parser.add_argument("--poll", type=positive_number, default=2.0, help="seconds between reads of a run's metrics.csv")
    parser.add_argument("--check", action="store_true", help="only validate the file (both schemas), run nothing")
    parser.add_argument("--multirun", nargs="?", const="submitit_slurm", metavar="LAUNCHER",
                        help="print a grid sweep as one Hydra multirun command for LAUNCHER (default submitit_slurm)")
    args = parser.parse_args(argv)
    try:
        if args.multirun:
            from llmexp.sweep.check import check_sweep
            from llmexp.sweep.multirun import multirun_command
            from llmexp.sweep.sweepfile import load_sweep

            sweep = load_sweep(args.sweep)
            check_sweep(sweep)
            print(multirun_command(sweep, args.multirun))
            return 0
        if args.check:
            from llmexp.sweep.check import check_sweep
            from llmexp.sweep.sweepfile import load_sweep

            report = check_sweep(load_sweep(args.sweep))
            print(f"{args.sweep}: valid for W&B and llmexp ({report.combinations} parameter combinations composed)")
            for note in report.notes:
                print(f"  note: {note}")
            return 0
        from llmexp.sweep.driver import run_sweep
        from llmexp.sweep.report import markdown, rows

        sweep, state, sweep_dir = run_sweep(args.sweep, args.count, args.dir, args.seed, args.poll)
    except SweepError as err:
        print(f"llmexp.sweep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmexp.sweep: interrupted; run the same command again to continue the sweep", file=sys.stderr)
        return 130
    print("\n" + markdown(rows(sweep, state)))
    print(f"sweep folder {sweep_dir}: summary.md, summary.csv, plot.png, best.txt, state.json")
    print((sweep_dir / "best.txt").read_text().strip())
    return 0 if any(r.state == "finished" for r in state.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
