"""Training-step time under TensorFlow's thread-pool sizes (intra-op and inter-op), alternately.

    python benchmarks/threads.py --model=vae --threads=0:0,2:1,1:1,1:2,2:2 --rounds=3

Each setting ``intra:inter`` runs ``benchmarks/settings.py`` (bin/train's defaults, model.fit
with its per-step callbacks, best of four windows) in its own process with
``TF_NUM_INTRAOP_THREADS`` and ``TF_NUM_INTEROP_THREADS`` set (``0:0``: TensorFlow's own choice,
one thread per core for both pools, which ``bin/train`` keeps). The pools are fixed when
TensorFlow's runtime starts, hence one process per setting; the settings alternate, round after
round, so that this machine's drift reaches all of them alike.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def step_ms(model, steps, intra, inter, setting="50:1"):
    """ms per training step of ``model`` in a fresh process with the given pool sizes."""
    env = dict(os.environ)
    for name, value in (("TF_NUM_INTRAOP_THREADS", intra), ("TF_NUM_INTEROP_THREADS", inter)):
        env.pop(name, None)
        if value:
            env[name] = str(value)
    out = subprocess.run([sys.executable, os.path.join(HERE, "settings.py"), f"--model={model}",
                          f"--steps={steps}", f"--settings={setting}"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(re.findall(r"([0-9.]+) ms/step", out)[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vae", help="vae, gmvae, ssvae or fsvae")
    parser.add_argument("--steps", type=int, default=1000, help="timed steps per setting")
    parser.add_argument("--threads", default="0:0,2:1,1:1,1:2,2:2",
                        help="comma-separated intra:inter pool sizes (0: TensorFlow's choice)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = [tuple(int(n) for n in s.split(":")) for s in args.threads.split(",")]
    times = {s: [] for s in settings}
    for r in range(args.rounds):
        for intra, inter in settings:
            times[(intra, inter)].append(step_ms(args.model, args.steps, intra, inter))
            print(f"round {r + 1} intra={intra} inter={inter}: "
                  f"{times[(intra, inter)][-1]:.2f} ms/step", flush=True)
    for (intra, inter), ms in times.items():
        print(f"{args.model} intra={intra} inter={inter}: "
              + " / ".join(f"{t:.2f}" for t in ms) + f" ms (median {statistics.median(ms):.2f})")


if __name__ == "__main__":
    main()
