"""Time of the IWAE evaluations alone, for comparing two commits on one machine.

    python benchmarks/iwae_eval.py                          # about 40 s
    PYTHONPATH=/path/to/other/checkout python benchmarks/iwae_eval.py   # the other commit's code
    python benchmarks/iwae_eval.py --jit=0,1                # without and with XLA, alternately
    python benchmarks/iwae_eval.py --max_rows=10000,2000,500 --rounds=2   # IWAE chunk sizes

The subset IWAE-1000 (100 images x 1000 samples, best of three) and the full-test IWAE-100
(10,000 images x 100 samples) of the VAE and the GMVAE, timed as ``benchmarks/bench.py`` times
them (its functions, on a model trained for a few steps: the time does not depend on the
weights), without the rest of that benchmark. Run it alternately on two checkouts to see what a
change did; ``bench.py`` remains the one run that gives the ratios.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402
from tfp_vae import data, train  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jit", default="0", help="comma-separated XLA settings of the bound "
                        "functions (evaluate.model_bounds' jit_compile: 0, 1), run in turn")
    parser.add_argument("--max_rows", default="", help="comma-separated IWAE chunk sizes "
                        "(the model's iwae_max_rows: (sample, image) rows per chunk), run in "
                        "turn; default: the model's own (on MNIST 10,000 for the VAE, 2,000 for "
                        "the GMVAE)")
    parser.add_argument("--rounds", type=int, default=1, help="times each setting is run, in turn")
    args = parser.parse_args()
    mnist = data.load_mnist()
    print(f"tfp_vae from {os.path.dirname(train.__file__)} at commit {train.source_commit()}")
    for kind in ("vae", "gmvae"):
        _, model, _, _ = bench.train_speed(kind, mnist, steps=20, spe=1, jit=False, windows=1)
        rows = [int(r) for r in args.max_rows.split(",")] if args.max_rows else [None]
        for _ in range(args.rounds):
            for max_rows in rows:
                if max_rows:
                    model.iwae_max_rows = max_rows  # read when the bound functions are traced
                for jit in (bool(int(j)) for j in args.jit.split(",")):
                    subset = min(bench.time_subset_iwae(model, mnist, jit=jit)[0]
                                 for _ in range(3))
                    full = bench.time_full_test_iwae(model, mnist, jit=jit)[0]
                    print(f"{kind}, iwae_max_rows={model.iwae_max_rows}, jit_compile={jit}: "
                          f"subset IWAE-1000 {subset:.3f} s, full-test IWAE-100 {full:.2f} s",
                          flush=True)


if __name__ == "__main__":
    main()
