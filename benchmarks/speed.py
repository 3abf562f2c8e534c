"""Training speed as a user measures it: whole processes, ``bin/train`` against the peers a user
would pick instead, per step, in one run on one machine.

    pip install -r benchmarks/requirements-peer.txt    # torch and pythae, once, in any environment
    python benchmarks/speed.py --peer_python=/path/to/that/python --write=benchmarks/RESULTS.md

Each contender trains the reference networks (784-300-300 ELU MLPs, batch 97, Adam 1e-3, two
CPU threads) in a process of its own, launch to exit, for a short and a long number of steps;
the difference of the two, divided by the difference of the steps, is its time per step, from
which start-up, data loading and the final evaluation cancel. Rounds alternate the contenders
(short then long for each), so that the machine's drift falls on all alike; each figure is the
median over the rounds, and each ratio the median of the rounds' ratios.

Contenders:

* ``tfp_vae``: ``bin/train --model=M`` with the cheapest evaluation and no export (both cancel
  anyway) and ``--jit_compile=true`` (the default, ``auto``, compiles runs of 2,000 steps or
  more, so a short run would be another program).
* ``pytorch``: ``benchmarks/peer_torch.py --train_steps=N``, the same networks in eager
  PyTorch, the same stream (a new permutation each epoch, dynamic binarisation).
* ``pythae``: ``benchmarks/peer_pythae.py --epochs=E`` (VAE only: pythae has no mixture-of-
  Gaussians prior), pythae 0.1.2's ``TrainingPipeline`` with the same encoder and decoder; pythae
  counts epochs: 1 and 5 epochs of batch 97 (619 and 3,095 steps).

Every contender runs the same lengths: 1 and 5 epochs (619 and 3,095 steps; the SSVAE 100 and
600 steps, its steps being ten times dearer). ``bin/train``'s long run makes one ``fit`` call
more than its short one (the 95 steps after its last log step), whose set-up, some tens of
milliseconds, falls on the per-step figure as a user's run of that length pays it.

Prints a table (and writes it into ``--write``'s file, replacing the section between its
markers). The floor is the step's matrix products (forward and backward) at the machine's
float32 matmul rate, measured at the start.
"""

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "benchmarks")
CHEAP = ["--eval_repeats=1", "--iwae_samples=1", "--nofull_test", "--noexport",
         "--jit_compile=true"]
EPOCH = 619  # steps in one epoch of MNIST's 60,000 training images in batches of 97
LENGTHS = {"vae": (EPOCH, 5 * EPOCH), "gmvae": (EPOCH, 5 * EPOCH), "ssvae": (100, 600)}
BEGIN, END = "<!-- speed.py begin -->", "<!-- speed.py end -->"


def command(contender, model, steps, out, peer_python):
    """The command line of one whole training process."""
    if contender == "tfp_vae":
        return [sys.executable, os.path.join(ROOT, "bin", "train"), f"--model={model}",
                f"--iter_max={steps}", f"--out_dir={out}", *CHEAP]
    if contender == "pytorch":
        return [peer_python, os.path.join(HERE, "peer_torch.py"), f"--models={model}",
                "--variants=eager", f"--train_steps={steps}"]
    return [peer_python, os.path.join(HERE, "peer_pythae.py"), f"--epochs={steps // EPOCH}",
            f"--output_dir={out}"]


def seconds(contender, model, steps, peer_python):
    """Wall seconds of one process of ``steps`` steps, launch to exit."""
    with tempfile.TemporaryDirectory() as out:
        cmd = command(contender, model, steps, out, peer_python)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=ROOT))
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        if contender == "tfp_vae":  # where the process's time went, as bin/train recorded it
            result = json.load(open(glob.glob(os.path.join(out, "*", "evaluation.json"))[0]))
            print(f"  bin/train {steps} steps: {elapsed:.1f} s in all; its evaluation.json: "
                  f"startup_seconds {result['startup_seconds']}, train_seconds "
                  f"{result['train_seconds']}, wall_seconds {result['wall_seconds']}", flush=True)
    return elapsed


def matmul_rate():
    """float32 GFLOP/s of a 2048^3 matrix product on this machine (TensorFlow, best of 5)."""
    import tensorflow as tf
    a = tf.random.normal([2048, 2048])
    product = tf.function(lambda a: tf.linalg.matmul(a, a))
    product(a).numpy()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        product(a).numpy()
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048 ** 3 / best / 1e9


def step_flop(model):
    """Multiply-adds x 2 of one training step's matrix products, forward and backward (3x the
    forward's), at batch 97: encoder 784-300-300-20 and decoder 10-300-300-784; the SSVAE adds
    its classifier 784-300-300-10 and the ten labels' decoder passes (z = 64) over the 97
    unlabelled images, plus the classifier on the 100 labelled ones."""
    def mlp(sizes, rows):
        return sum(2 * rows * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    if model == "ssvae":
        forward = (mlp([784 + 10, 300, 300, 128], 970) + mlp([64 + 10, 300, 300, 784], 970)
                   + mlp([784, 300, 300, 10], 197))
    else:
        forward = mlp([784, 300, 300, 20], 97) + mlp([10, 300, 300, 784], 97)
    return 3 * forward


def measure(models, contenders, rounds, peer_python):
    """``{model: {contender: [ms per step of each round]}}``."""
    times = {m: {c: [] for c in contenders if c != "pythae" or m == "vae"} for m in models}
    for r in range(rounds):
        for model in models:
            for contender in times[model]:
                short, long = LENGTHS[model]
                a = seconds(contender, model, short, peer_python)
                b = seconds(contender, model, long, peer_python)
                times[model][contender].append(1e3 * (b - a) / (long - short))
                print(f"round {r + 1} {model} {contender}: "
                      f"{times[model][contender][-1]:.2f} ms/step", flush=True)
    return times


def table(times, rate):
    """The Markdown table of ``times``, with ratios and the floor."""
    lines = ["| model | tfp_vae `bin/train` | PyTorch eager | ours / PyTorch | pythae 0.1.2 | "
             "ours / pythae | floor (matmuls at %.0f GFLOP/s) | ours / floor |" % rate,
             "|---|---|---|---|---|---|---|---|"]
    for model, per in times.items():
        ours = statistics.median(per["tfp_vae"])
        floor = step_flop(model) / rate / 1e6

        cells = [model.upper(), f"{ours:.2f} ms"]
        for peer in ("pytorch", "pythae"):
            if peer in per:
                ratio = statistics.median(o / p for o, p in zip(per["tfp_vae"], per[peer]))
                cells += [f"{statistics.median(per[peer]):.2f} ms", f"**{ratio:.2f}x**"]
            else:
                cells += ["-", "-"]
        cells += [f"{floor:.2f} ms", f"{ours / floor:.1f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(path, text):
    """Replaces the part of ``path`` between the markers with ``text``."""
    with open(path) as f:
        page = f.read()
    if BEGIN not in page or END not in page:
        raise SystemExit(f"error: {path} has no {BEGIN} ... {END} section to replace.")
    head, rest = page.split(BEGIN, 1)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="vae,gmvae,ssvae")
    parser.add_argument("--contenders", default="tfp_vae,pytorch,pythae")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer_python", default=sys.executable,
                        help="a Python with torch (and pythae) installed")
    parser.add_argument("--write", default="", help="a Markdown file with the markers")
    args = parser.parse_args()
    models, contenders = args.models.split(","), args.contenders.split(",")
    rate = matmul_rate()
    started = time.strftime("%Y-%m-%d")
    times = measure(models, contenders, args.rounds, peer_python=args.peer_python)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    text = (f"`python benchmarks/speed.py --rounds={args.rounds}` on {started}, commit "
            f"`{commit}`: {os.cpu_count()} cores, Python {platform.python_version()}; ms per "
            f"training step, each the median of {args.rounds} rounds of (long - short run) / "
            f"(long - short steps): VAE and GMVAE {LENGTHS['vae'][1]} - {LENGTHS['vae'][0]} "
            f"(5 - 1 epochs), SSVAE {LENGTHS['ssvae'][1]} - {LENGTHS['ssvae'][0]}.\n\n"
            + table(times, rate))
    print(text)
    if args.write:
        write(args.write, text)


if __name__ == "__main__":
    main()
