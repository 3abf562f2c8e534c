"""Start-up of ``bin/train`` and ``bin/sample`` for two or more code trees, run alternately.

    git worktree add /tmp/old <commit>
    python benchmarks/startup.py --trees=/tmp/old,. --rounds=5            # about 2 min
    python benchmarks/startup.py --trees=/tmp/old:/tmp/extra,. --rounds=5

Each round runs, for each tree in turn, ``bin/train --model=vae`` for one step (its
``startup_seconds``: launch to the end of the first training step, as ``benchmarks/bench.py``
reports it) and ``bin/sample`` on ``savedmodels/vae`` (launch to exit), with that tree first on
``PYTHONPATH`` (after it, the folders given after a ``:``, e.g. an older ml_dtypes installed
with ``pip install --target``), timed by ``bench.py``'s own functions. Alternating the trees
spreads this machine's drifts over both; the median and the range of the rounds are printed per
tree. ``bench.py`` remains the one run that gives the targets.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402  (its start-up and bin/sample timings, for any tree)


def one_round(tree, path):
    """(start-up of bin/train, launch-to-exit of bin/sample) in seconds, with ``tree``'s code."""
    env = dict(os.environ, PYTHONPATH=path)
    return (bench.startup_seconds(tree, env),
            bench.sample_seconds(os.path.join(bench.SAVEDMODELS, "vae"), 1, tree, env))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trees", default=".", help="comma-separated code trees, each "
                        "optionally followed by ':' and more PYTHONPATH folders")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = []
    for item in args.trees.split(","):
        tree = os.path.abspath(item.split(":")[0])
        trees.append((item, tree, os.pathsep.join([tree] + item.split(":")[1:])))
    times = {item: ([], []) for item, _, _ in trees}
    for _ in range(args.rounds):
        for item, tree, path in trees:
            for series, value in zip(times[item], one_round(tree, path)):
                series.append(value)
    for item, (startup, sample) in times.items():
        print(f"{item}: bin/train start-up median {statistics.median(startup):.2f} s "
              f"({min(startup):.2f} to {max(startup):.2f}), bin/sample median "
              f"{statistics.median(sample):.2f} s ({min(sample):.2f} to {max(sample):.2f}), "
              f"{args.rounds} rounds")


if __name__ == "__main__":
    main()
