"""bin/train's training step as a user measures it: the difference of a long and a short run of
the whole command (start-up, the final evaluation and the export cancel), per step.

    python benchmarks/end_to_end.py --trees=/path/to/old,/path/to/new --model=vae --rounds=3

Each round runs every tree's short and long command once, alternating trees, so that the
machine's drift falls on all of them alike. Both lengths use XLA (``--jit_compile=true``: the
default turns it off below 2,000 steps, which would make the two lengths different programs)
and the cheapest evaluation. Prints, per tree, the ms per step of every round and their median.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHEAP = ["--eval_repeats=1", "--iwae_samples=1", "--nofull_test", "--noexport",
         "--jit_compile=true"]


def whole_run(tree, model, steps, extra=()):
    """Seconds of one ``bin/train`` process of ``steps`` steps from ``tree``, launch to exit."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, os.path.join(tree, "bin", "train"), f"--model={model}",
                   f"--iter_max={steps}", f"--out_dir={out}", *CHEAP, *extra]
        t0 = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True,
                       env=dict(os.environ, PYTHONPATH=tree))
        return time.perf_counter() - t0


def per_step_ms(tree, model, short, long, extra=()):
    """(long run - short run) / (long - short steps), in ms."""
    return 1e3 * (whole_run(tree, model, long, extra) - whole_run(tree, model, short, extra)) \
        / (long - short)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", default=ROOT, help="comma-separated source trees")
    parser.add_argument("--model", default="vae")
    parser.add_argument("--short", type=int, default=500)
    parser.add_argument("--long", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--extra", default="", help="more bin/train flags, space-separated")
    args = parser.parse_args()
    trees = args.trees.split(",")
    extra = args.extra.split()
    times = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:
            times[tree].append(per_step_ms(tree, args.model, args.short, args.long, extra))
    print(f"bin/train --model={args.model} {' '.join(extra)}: ms per step, "
          f"({args.long} - {args.short} steps), {args.rounds} alternating rounds")
    for tree, values in times.items():
        print(f"  {tree}: {' / '.join(f'{v:.2f}' for v in values)}  "
              f"median {statistics.median(values):.2f}")


if __name__ == "__main__":
    main()
