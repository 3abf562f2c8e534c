"""Training-step time of one model under several (steps_per_execution, jit_compile, optimiser)
settings.

    python benchmarks/settings.py --model=gmvae --steps=1000 --settings=1:0,50:0,50:1
    python benchmarks/settings.py --model=vae --settings=50:0:keras,50:0:fused,50:1:fused
    python benchmarks/settings.py --model=vae --settings=50:0,50:0:default:conv   # MLP vs conv

A setting may name the networks last (``mlp``, the default, or ``conv``). The optimiser is
``default`` (bin/train's choice: :class:`tfp_vae.optimizers.FusedAdam` without
XLA, ``keras.optimizers.Adam`` with it), ``fused`` (FusedAdam) or ``keras`` (Keras' Adam).

Each setting is timed as :func:`bench.train_speed` times it (model.fit with bin/train's per-step
callbacks, best of four windows). This is how the defaults of bin/train were chosen: several steps
per call for every model, XLA only where it measured clearly faster (README "Performance").
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402
from tfp_vae import data  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vae", help="vae, gmvae, ssvae or fsvae")
    parser.add_argument("--steps", type=int, default=1000, help="timed steps per setting")
    parser.add_argument("--settings", default="1:0,50:0,50:1",
                        help="comma-separated steps_per_execution:jit[:optimiser[:arch]] (jit 0 "
                        "or 1; optimiser default, fused or keras; arch mlp or conv)")
    args = parser.parse_args()
    mnist = data.load_mnist()
    for setting in args.settings.split(","):
        spe, jit, optimizer, arch = (setting.split(":") + ["default", "mlp"][
            len(setting.split(":")) - 2:])[:4]
        spe, jit = int(spe), bool(int(jit))
        if optimizer not in bench.OPTIMIZERS:
            parser.error(f"optimiser must be one of {sorted(bench.OPTIMIZERS)}, got "
                         f"{optimizer!r} in {setting!r}")
        rate, _, batch, _ = bench.train_speed(args.model, mnist, args.steps, spe, jit,
                                              optimizer=optimizer, arch=arch)
        print(f"{args.model} batch {batch} steps_per_execution={spe} jit_compile={jit} "
              f"optimiser={optimizer} arch={arch}: {1e3 / rate:.2f} ms/step "
              f"({rate:.1f} steps/s)", flush=True)


if __name__ == "__main__":
    main()
