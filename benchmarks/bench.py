"""Speed of tfp_vae on this machine, as a ratio to what its matrix-multiply rate allows, beside
the PyTorch peer, with the table of the speed targets.

    python benchmarks/bench.py        # about ten minutes on 2 CPU cores; writes RESULTS.md

One run measures, and prints as tables (also written to ``benchmarks/RESULTS.md`` with the date,
CPU and library versions):

* the machine's float32 matmul rate (TensorFlow, 2048 x 2048, all cores), measured before and
  after the timings; the better of the two is the "peak";
* for each model at its reference batch size, training steps per second through ``model.fit``
  on the reference data stream (the FSVAE on SVHN-shaped random images: its speed does not depend
  on the pixels), with ``bin/train``'s defaults on one device and with the settings before the
  performance work (one step per call, no XLA, Keras' Adam);
* the subset IWAE-1000 evaluation (100 images x 1000 samples) of the VAE and the GMVAE, and the
  full-test-set IWAE-100 (10,000 images x 100 samples);
* the peak resident memory each of these added (Linux ``/proc``);
* the start-up of ``bin/train`` (launch to the end of the first training step), ``bin/sample`` on
  a SavedModel, and, as their floor, a bare import of TensorFlow, TFP and Keras;
* the PyTorch peer (``benchmarks/peer_torch.py``, in its own process) when torch is installed
  (``benchmarks/requirements-peer.txt``; never a dependency of the package);
* the wall time of the full reference-length ``bin/train`` of each model, read from the
  ``evaluation.json`` of the models in ``savedmodels/`` (``--runs_dir``), so the benchmark itself
  stays short;
* the targets of the speed work, each with this run's value.

Floor = the matmul FLOPs of the work / the peak rate. FLOP counts (dense layers only; activations,
sampling, the mixture prior's density and the optimiser are extra work that the floor does not
count): a forward pass of B rows through a fan_in x fan_out layer costs 2 B fan_in fan_out; a
training step costs the forward pass, the weight gradients (the same again) and the input
gradients (the same again, except for layers fed by data, whose input gradient is not needed).
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from tfp_vae import callbacks, data, evaluate, guard, models, optimizers, train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVEDMODELS = os.path.join(ROOT, "savedmodels")

# The reference runs whose logs give the full-length wall times: (label, command, run folder).
REFERENCE_RUNS = (
    ("VAE", "bin/train --model=vae", "vae"),
    ("GMVAE", "bin/train --model=gmvae", "gmvae"),
    ("SSVAE", "bin/train --model=ssvae --gw=1 --cw=100", "ssvae"),
    ("FSVAE (MNIST)", "bin/train --model=fsvae --dataset=mnist --iter_max=50000", "fsvae"),
)
# The targets of the speed work: (what, goal). Ratios are to the peak-rate floor; "peer" ratios
# are our step time over PyTorch's on the same machine in the same benchmark run.
WALL_TARGETS = {"VAE": 90, "GMVAE": 100, "SSVAE": 700}


# ------------------------------------------------------------------------------------- memory
def _status(key):
    """A byte count from /proc/self/status (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None


def reset_peak():
    """Resets the peak resident size (VmHWM) to the current one; returns the current one."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status("VmRSS")


def peak_since(base):
    peak = _status("VmHWM")
    return None if peak is None or base is None else peak - base


# -------------------------------------------------------------------------------------- flops
def matmul_rate(n=2048, repeats=20):
    """Measured float32 matmul FLOP/s (best of a few timed batches)."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    f = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    f(a, b).numpy()
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            f(a, b).numpy()
        best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - t0))
    return best


def dense_shapes(layer):
    return [(int(v.shape[0]), int(v.shape[1])) for v in layer.trainable_variables
            if len(v.shape) == 2]


def train_step_flops(parts):
    """``parts``: (network, rows, takes_data, first_rows) tuples; a network fed by data needs no
    gradient with respect to its input, and its first layer sees ``first_rows`` rows (fewer
    than ``rows`` when its input is shared by several rows, as the SSVAE's x by its ten
    enumerated labels)."""
    total = 0
    for network, rows, takes_data, first_rows in parts:
        shapes = dense_shapes(network)
        forward = [2 * (first_rows if i == 0 else rows) * a * b for i, (a, b) in enumerate(shapes)]
        total += 3 * sum(forward) - (forward[0] if takes_data else 0)
    return total


def step_parts(model, batch):
    """The networks of one training step, the rows each sees and the rows of its first layer."""
    if model.kind == "ssvae":  # each unlabelled image once per label; x's product once; the
        # classifier once on the unlabelled and the 100 labelled images together
        return [(model.encoder, 10 * batch, True, batch), (model.decoder, 10 * batch, False,
                                                           10 * batch),
                (model.classifier, batch + 100, True, batch + 100)]
    return [(model.encoder, batch, True, batch), (model.decoder, batch, False, batch)]


def matmuls_alone(parts, repeats=200):
    """Seconds of the step's matmuls alone, at their shapes (forward, weight gradients and the
    needed input gradients, no activations): what these small matrices allow on this CPU, as
    opposed to the peak rate of large ones."""
    rng = np.random.default_rng(0)
    networks = []
    for network, rows, takes_data, first_rows in parts:
        shapes = dense_shapes(network)
        weights = [tf.Variable(rng.normal(0, 0.05, s).astype(np.float32)) for s in shapes]
        inputs = tf.Variable(rng.normal(0, 1, (first_rows, shapes[0][0])).astype(np.float32))
        networks.append((weights, inputs, takes_data, rows // first_rows))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            total = 0.0
            for weights, inputs, _, repeat in networks:
                h = inputs
                for i, w in enumerate(weights):
                    h = tf.matmul(h, w)
                    if i == 0 and repeat > 1:
                        h = tf.tile(h, [repeat, 1])
                total += tf.reduce_sum(h)
        sources = [v for weights, inputs, takes_data, _ in networks
                   for v in weights + ([] if takes_data else [inputs])]
        grads = tape.gradient(total, sources)
        return tf.add_n([tf.reduce_sum(g[:1, :1]) for g in grads])

    for _ in range(20):
        step().numpy()
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            step().numpy()
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def iwae_matmuls_alone(model, images, samples, repeats=3):
    """Seconds of the IWAE's matmuls alone: the encoder once on the images and the decoder on
    (sample, image) rows in the chunks the model uses (forward only, no activations)."""
    rows = max(images, model.iwae_max_rows // images * images)
    chunks = math.ceil(images * samples / rows)
    enc = [tf.constant(np.ones(s, np.float32) * 0.01) for s in dense_shapes(model.encoder)]
    dec = [tf.constant(np.ones(s, np.float32) * 0.01) for s in dense_shapes(model.decoder)]
    x = tf.constant(np.ones((images, enc[0].shape[0]), np.float32))
    z = tf.constant(np.ones((rows, dec[0].shape[0]), np.float32))

    @tf.function
    def run():
        h = x
        for w in enc:
            h = tf.matmul(h, w)
        total = tf.reduce_sum(h[:1, :1])
        for _ in tf.range(chunks):
            g = z
            for w in dec:
                g = tf.matmul(g, w)
            total += tf.reduce_sum(g[:1, :1])
        return total

    run().numpy()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        run().numpy()
        best = min(best, time.perf_counter() - t0)
    return best


def iwae_flops(model, images, samples):
    """Encoder once per image, decoder once per (sample, image) row."""
    enc = sum(2 * images * i * o for i, o in dense_shapes(model.encoder))
    dec = sum(2 * images * samples * i * o for i, o in dense_shapes(model.decoder))
    return enc + dec


# ----------------------------------------------------------------------------------- training
def training_stream(kind, mnist, batch):
    if kind == "ssvae":
        xl, yl = data.labelled_subset(mnist)
        return data.semisupervised_dataset(mnist.train_images, mnist.train_labels, xl, yl,
                                           batch, seed=0)
    if kind == "fsvae":  # SVHN-shaped images (the speed does not depend on their content)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (20_000, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, 20_000).astype(np.int64)
        return data.train_dataset(images, batch, seed=0, binarized=False, labels=labels)
    return data.train_dataset(mnist.train_images, batch, seed=0)


OPTIMIZERS = {"default": train.make_optimizer,  # bin/train's: FusedAdam without XLA
              "fused": lambda lr, jit: optimizers.FusedAdam(lr),
              "keras": lambda lr, jit: keras.optimizers.Adam(lr)}


def compiled_model(kind, spe, jit, optimizer="default", arch="mlp"):
    """A fresh model of ``kind`` at its reference latent size, compiled as ``bin/train`` does with
    ``spe`` steps per call and ``jit``; ``optimizer``: a key of :data:`OPTIMIZERS`."""
    cls = models.get(kind)
    model = cls(z_dim=cls.reference_z, arch=arch)
    model.compile(optimizer=OPTIMIZERS[optimizer](1e-3, jit),
                  steps_per_execution=spe, jit_compile=jit)
    return model


def train_speed(kind, mnist, steps, spe, jit, windows=4, optimizer="default", arch="mlp",
                stream_options=None):
    """Steps per second of ``model.fit`` (after a warm-up), the model and the peak memory added.
    ``optimizer``: a key of :data:`OPTIMIZERS`; ``arch``: the networks (``--arch``);
    ``stream_options``: ``tf.data.Options`` applied to the training stream."""
    batch = models.get(kind).reference_batch_size
    base = reset_peak()
    model = compiled_model(kind, spe, jit, optimizer, arch)
    stream = training_stream(kind, mnist, batch)
    if stream_options is not None:
        stream = stream.with_options(stream_options)
    callbacks = bin_train_callbacks(model)
    warm = max(2 * spe, 20)
    model.fit(stream, epochs=1, steps_per_epoch=warm, verbose=0, callbacks=callbacks)  # compile
    # The best of a few windows: this shared machine's speed wanders by tens of per cent from
    # one second to the next, and the best window is the one least disturbed.
    window = max(spe, steps // windows // spe * spe)
    best = math.inf
    for _ in range(windows):
        t0 = time.perf_counter()
        model.fit(stream, epochs=1, steps_per_epoch=window, verbose=0, callbacks=callbacks)
        best = min(best, time.perf_counter() - t0)
    return window / best, model, batch, peak_since(base)


def bin_train_callbacks(model):
    """The per-step callbacks bin/train uses (checkpoint bookkeeping and NaN checks, sample
    grids), with intervals that never fire, so that their per-step cost is included."""
    folder = tempfile.mkdtemp()
    checkpoint = tf.train.Checkpoint(model=model)
    manager = tf.train.CheckpointManager(checkpoint, folder, max_to_keep=1)
    never = 10 ** 9
    return [guard.StepCheckpoint(manager, never, never),
            callbacks.SampleGrids(folder, never, seed=0)]


def default_settings(kind):
    """bin/train's defaults for ``kind`` on one device: (steps_per_execution, jit_compile)."""
    config = train.TrainConfig(model=kind).validate()
    return (train.resolve_steps_per_execution(config, 0),
            train.resolve_jit(config, tf.distribute.get_strategy()))


# --------------------------------------------------------------------------------- evaluation
def time_subset_iwae(model, mnist, m=1000, jit=False):
    _, iwae = evaluate.model_bounds(model, jit)
    x, _ = data.test_subset(mnist)
    x = tf.constant(x)
    iwae(x, tf.constant(m), tf.constant([0, 0]))[0].numpy()  # trace
    base = reset_peak()
    t0 = time.perf_counter()
    iwae(x, tf.constant(m), tf.constant([0, 1]))[0].numpy()
    return time.perf_counter() - t0, iwae_flops(model, len(x), m), peak_since(base)


def time_full_test_iwae(model, mnist, m=100, batch=500, jit=False):
    _, iwae = evaluate.model_bounds(model, jit)
    x, _ = data.full_test_set(mnist)
    iwae(tf.constant(x[:batch]), tf.constant(m), tf.constant([0, 0]))[0].numpy()  # trace
    base = reset_peak()
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        iwae(tf.constant(x[i:i + batch]), tf.constant(m), tf.constant([1, i]))[0].numpy()
    return time.perf_counter() - t0, iwae_flops(model, len(x), m), peak_since(base)


# ------------------------------------------------------------------------------------ start-up
def bin_train_evaluation(args, tree=ROOT, env=None):
    """The ``evaluation.json`` of ``bin/train ARGS`` (a short run: one evaluation repeat, no
    full test, no export) in a temporary folder; ``tree``: the code tree whose ``bin/train``
    runs, ``env``: its environment (``benchmarks/startup.py``)."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, os.path.join(tree, "bin", "train"), *args,
                        "--eval_repeats=1", "--nofull_test", "--noexport", f"--out_dir={out}"],
                       check=True, capture_output=True, env=env)
        run, = os.listdir(out)
        with open(os.path.join(out, run, "evaluation.json")) as f:
            return json.load(f)


def startup_seconds(tree=ROOT, env=None):
    """Launch of ``bin/train --model=vae`` to the end of its first training step; ``tree`` and
    ``env`` as for :func:`bin_train_evaluation`."""
    return bin_train_evaluation(["--model=vae", "--iter_max=1", "--iter_save=1", "--log_every=1",
                                 "--iwae_samples=1"], tree, env)["startup_seconds"]


def import_seconds(repeats=3):
    """The floor under any start-up: a fresh Python importing TensorFlow, TFP and Keras, nothing
    else of tfp_vae (best of ``repeats``)."""
    code = "import tensorflow, tensorflow_probability, keras"
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
        best = min(best, time.perf_counter() - t0)
    return best


def sample_seconds(model_dir, repeats=3, tree=ROOT, env=None):
    """``bin/sample`` on a SavedModel, launch to the PNG written (best of ``repeats``); ``tree``
    and ``env`` as for :func:`startup_seconds`."""
    best = math.inf
    with tempfile.TemporaryDirectory() as out:
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, os.path.join(tree, "bin", "sample"),
                            f"--model_dir={model_dir}", f"--out={out}/s.png"],
                           check=True, capture_output=True, env=env)
            best = min(best, time.perf_counter() - t0)
    return best


def peer_results(mode):
    """The PyTorch peer's ms per step (``benchmarks/peer_torch.py`` in its own process, so that
    neither library's threads disturb the other), or None without torch (``mode="auto"``)."""
    import importlib.util
    if mode == "no" or (mode == "auto" and importlib.util.find_spec("torch") is None):
        return None
    with tempfile.TemporaryDirectory() as out:
        path = os.path.join(out, "peer.json")
        subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "peer_torch.py"),
                        "--models=vae,gmvae,ssvae", f"--json={path}"], check=True)
        with open(path) as f:
            return json.load(f)


def reference_runs(runs_dir):
    """The rows of the reference runs' table and their wall times by label: each run's
    ``evaluation.json`` from ``runs_dir``, or from ``savedmodels/`` where ``runs_dir`` has none."""
    rows, walls = [], {}
    for label, command, name in REFERENCE_RUNS:
        path = os.path.join(runs_dir, name, "evaluation.json")
        if not os.path.isfile(path):
            path = os.path.join(SAVEDMODELS, name, "evaluation.json")
        if not os.path.isfile(path):
            rows.append(f"| {label} | `{command}` | (no run in {runs_dir}) | | | | |")
            continue
        with open(path) as f:
            run = json.load(f)
        startup = run.get("startup_seconds")
        walls[label] = run["wall_seconds"]
        rows.append(f"| {label} | `{command}` | {run['steps']} | "
                    f"{'?' if startup is None else f'{startup:.1f} s'} | "
                    f"{run['train_seconds']:.0f} s ({run['train_steps_per_second']:.1f} steps/s) | "
                    f"{run['wall_seconds']:.0f} s | `{run.get('commit') or '?'}` |")
    return rows, walls


# ---------------------------------------------------------------------------------------- main
def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mib(nbytes):
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.0f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000,
                        help="timed training steps per setting (a tenth for the SSVAE)")
    parser.add_argument("--runs_dir", default=SAVEDMODELS,
                        help="folder of the reference runs whose wall times are reported (one "
                        "sub-folder per model, named as in savedmodels/; savedmodels/ for a "
                        "model it lacks)")
    parser.add_argument("--peer", choices=("auto", "yes", "no"), default="auto",
                        help="time the PyTorch peer (benchmarks/peer_torch.py) in the same run: "
                        "auto = when torch is installed (benchmarks/requirements-peer.txt)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"),
                        help="where to write the table ('' to skip)")
    parser.add_argument("--only_runs", action="store_true",
                        help="only re-read the reference runs and rewrite that part of --out "
                             "(after new full-length runs; the speed part is kept)")
    args = parser.parse_args()
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    if args.only_runs:
        with open(args.out) as f:
            kept = f.read().split(_RUNS_HEADING)[0].rstrip("\n").splitlines()
        lines.extend(kept)
        emit()
        emit_runs(args, emit)
        return write(args, lines)
    mnist = data.load_mnist()
    first_peak = matmul_rate()
    # Measurements first, rows after: the floors use the better of two peak measurements (one
    # now, one after the timings), since a single one can land in a slow moment of this shared
    # machine and make every floor too generous.
    measured, trained, shape_floor, step_ms = [], {}, {}, {}
    for kind in ("vae", "gmvae", "ssvae", "fsvae"):
        spe, jit = default_settings(kind)
        # Before the performance work; today's step with Keras' Adam; today's defaults.
        # (With XLA the default optimiser is Keras' Adam: one row.)
        settings = [(1, False, False, "before")] + (
            [] if jit else [(spe, jit, False, "Keras Adam")]) + [(spe, jit, True, "default")]
        for s, j, fused, tag in settings:
            steps = args.steps // 10 if kind == "ssvae" else args.steps
            rate, model, batch, memory = train_speed(kind, mnist, steps, s, j,
                                                     optimizer="default" if fused else "keras")
            trained[kind] = model
            alone = shape_floor.setdefault(kind, matmuls_alone(step_parts(model, batch)))
            step_ms[kind] = 1e3 / rate
            measured.append((f"{kind.upper()} train step, batch {batch}, spe={s}, jit={j} ({tag})",
                             1 / rate, train_step_flops(step_parts(model, batch)), alone, memory,
                             f"{kind.upper()} training step" if tag == "default" else None))
    for kind in ("vae", "gmvae"):
        seconds, flops, memory = time_subset_iwae(trained[kind], mnist)
        measured.append((f"{kind.upper()} subset IWAE-1000 (100 images x 1000 samples)", seconds,
                         flops, iwae_matmuls_alone(trained[kind], 100, 1000), memory,
                         f"{kind.upper()} subset IWAE-1000"))
        seconds, flops, memory = time_full_test_iwae(trained[kind], mnist)
        measured.append((f"{kind.upper()} full test IWAE-100 (10,000 images x 100 samples)",
                         seconds, flops, 20 * iwae_matmuls_alone(trained[kind], 500, 100), memory,
                         f"{kind.upper()} full-test IWAE-100"))  # 20 batches of 500 images
    last_peak = matmul_rate()
    peak = max(first_peak, last_peak)
    emit(f"# tfp_vae benchmark, {time.strftime('%Y-%m-%d')}")
    emit()
    emit(f"`python benchmarks/bench.py` at commit `{train.source_commit() or '?'}`: "
         f"{_cpu_name()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
         f"TensorFlow {tf.__version__}, Keras {keras.__version__}, TFP {tfp.__version__}.")
    emit()
    emit(f"float32 matmul peak (2048^3, TensorFlow): **{peak / 1e9:.1f} GFLOP/s**, the better of "
         f"{first_peak / 1e9:.1f} (before the timings) and {last_peak / 1e9:.1f} (after). Each "
         f"model is timed with the settings of bin/train before the performance work "
         f"(steps_per_execution=1, no XLA, keras.optimizers.Adam) and with today's defaults on "
         f"one device (XLA, Keras' Adam).")
    emit()
    emit("| work | measured | floor (peak rate) | ratio | its matmuls alone | ratio | peak memory "
         "added |")
    emit("|---|---|---|---|---|---|---|")
    step_ratio, iwae_ratio = {}, {}
    for label, seconds, flops, alone, memory, target in measured:
        floor = flops / peak
        ms = label.split(" ")[1] == "train"
        value = (f"{seconds * 1e3:.2f} ms ({1 / seconds:.0f} steps/s)" if ms else
                 f"{seconds:.2f} s")
        emit(f"| {label} | {value} | " + (f"{floor * 1e3:.2f} ms" if ms else f"{floor:.2f} s")
             + f" | {seconds / floor:.1f}x | "
             + (f"{alone * 1e3:.2f} ms" if ms else f"{alone:.2f} s")
             + f" | {seconds / alone:.1f}x | {_mib(memory)} |")
        if target and ms:
            step_ratio[label.split(" ")[0].lower()] = seconds / floor
        elif target:
            iwae_ratio[target] = seconds / floor
    emit()
    floor_import = import_seconds()
    startup = startup_seconds()
    sample = sample_seconds(os.path.join(SAVEDMODELS, "vae"))
    emit(f"Start-up: `bin/train --model=vae` from launch to the end of its first training step "
         f"**{startup:.1f} s**; `bin/sample --model_dir=savedmodels/vae` from launch to the PNG "
         f"written **{sample:.1f} s**; a bare `python -c \"import tensorflow, "
         f"tensorflow_probability, keras\"` (nothing of tfp_vae) **{floor_import:.1f} s**.")
    emit()
    peer = peer_results(args.peer)
    if peer:
        emit("The PyTorch peer (`benchmarks/peer_torch.py`, run by this benchmark in its own "
             "process after the rows above; the same networks, batch, Adam and data stream; "
             f"PyTorch {peer[next(iter(peer))].get('torch', '?')}, "
             f"{peer[next(iter(peer))].get('threads', '?')} threads), ms per training step, "
             "each side its fastest timed window (as ours above):")
        emit()
        emit("| model | tfp_vae (default) | PyTorch eager | ours / eager | torch.compile | "
             "ours / compile |")
        emit("|---|---|---|---|---|---|")
        for kind, r in peer.items():
            eager, compiled = r.get("eager_best_ms"), r.get("compile_best_ms")
            emit(f"| {kind.upper()} | {step_ms[kind]:.2f} | {eager:.2f} | "
                 f"{step_ms[kind] / eager:.2f}x | "
                 + (f"{compiled:.2f} | {step_ms[kind] / compiled:.2f}x |" if compiled else
                    f"failed: {r.get('compile_error') or '?'} | |"))
        emit()
    walls = emit_runs(args, emit)
    emit()
    emit_targets(emit, step_ratio, step_ms, iwae_ratio, startup, sample, floor_import, peer,
                 walls)
    write(args, lines)


def emit_targets(emit, step_ratio, step_ms, iwae_ratio, startup, sample, tools_import, peer,
                 walls):
    """The table of targets (issue "Speed"), each with this run's value."""
    rows = [(f"{k.upper()} training step", "<= 2.2x floor" if k in ("vae", "gmvae") else
             "<= 1.5x floor", step_ratio[k], 2.2 if k in ("vae", "gmvae") else 1.5, "x")
            for k in ("vae", "gmvae", "ssvae", "fsvae")]
    rows += [(name, "<= 1.6x floor", ratio, 1.6, "x") for name, ratio in iwae_ratio.items()]
    rows += [("bin/train start-up (VAE)", "<= 5 s", startup, 5.0, " s"),
             ("bin/sample on a SavedModel", "<= 3 s", sample, 3.0, " s")]
    rows += [(f"{label} reference run, wall", f"<= {goal} s", walls[label], goal, " s")
             for label, goal in WALL_TARGETS.items() if label in walls]
    for kind, r in (peer or {}).items():
        rows.append((f"{kind.upper()} step / PyTorch eager", "<= 0.5x",
                     step_ms[kind] / r["eager_best_ms"], 0.5, "x"))
        if r.get("compile_best_ms"):
            rows.append((f"{kind.upper()} step / torch.compile", "< 1x",
                         step_ms[kind] / r["compile_best_ms"], 0.999, "x"))
    emit(f"Targets (this run; the start-up floor is the import of TensorFlow, TFP and Keras "
         f"alone as the tools do it, {tools_import:.1f} s here):")
    emit()
    emit("| target | goal | measured | met |")
    emit("|---|---|---|---|")
    for name, goal, value, limit, unit in rows:
        emit(f"| {name} | {goal} | {value:.2f}{unit} | {'yes' if value <= limit else 'no'} |")


_RUNS_HEADING = "Full reference-length runs"


def emit_runs(args, emit):
    where = os.path.relpath(args.runs_dir, ROOT)
    if os.path.abspath(args.runs_dir) != SAVEDMODELS:
        where += ", else savedmodels"
    emit(f"{_RUNS_HEADING} (from their `evaluation.json` in "
         f"{where}; wall = `wall_seconds`, from after the imports to the end of the evaluation, "
         f"without the export and the pictures):")
    emit()
    emit("| model | command | steps | start-up | training | wall | commit |")
    emit("|---|---|---|---|---|---|---|")
    rows, walls = reference_runs(args.runs_dir)
    for row in rows:
        emit(row)
    return walls


def write(args, lines):
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
