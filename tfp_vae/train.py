"""Training runs: strategy, data, ``model.fit``, checkpoints, evaluation, pictures and export.

``bin/train`` turns its flags into a :class:`TrainConfig` and calls :func:`run`; scripts can do
the same. A run lives in ``<out_dir>/<run name>/`` (the reference's names, e.g.
``model=vae_z=10_run=0000``)::

    checkpoints/       tf.train.Checkpoint of model + optimizer every iter_save steps
    logs/              TensorBoard scalars
    config.json        the configuration of the run
    evaluation.json    the evaluation at the end (also printed as a table)
    samples.png        200 samples, 10 x 20 (the FSVAE's: row = class, column = shared z)
    samples/           the same grid every iter_save steps
    savedmodel/        the SavedModel (signatures: see BaseVAE.export_endpoints)

Starting the same run again resumes from its last checkpoint: the optimiser state and the step
counter are restored, and the data stream and every random draw continue where they stopped
(they are stateless functions of the seed and the step).

Reliability (see README "Reliability"): checkpoints are published by TensorFlow only once
complete, and JSON, PNG and SavedModel files are written to a temporary path and renamed, so a
run killed at any moment (SIGKILL included) resumes from its last checkpoint and ends at exactly
``iter_max`` steps. Ctrl-C or SIGTERM saves a checkpoint at the current step before stopping; a
non-finite loss or weight stops training at once and keeps the last good checkpoint; a resumed run
must have the settings it was started with.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from tfp_vae import data, evaluate, export, files, images, models, svhn
from tfp_vae.errors import ConfigError, Diverged, Interrupted  # noqa: F401 (re-exported)

STRATEGIES = ("default", "mirrored", "multiworker")
JIT_CHOICES = ("auto", "true", "false")



@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; ``bin/train`` exposes each field as a flag."""
    model: str = "vae"
    dataset: str = None   # None: the model's first dataset (mnist; svhn for the fsvae)
    z: int = None         # None: the model's reference default (10; 64 for the SSVAE)
    k: int = 500
    gw: float = 1.0
    cw: float = 100.0
    iter_max: int = None  # None: the model's reference default (20000; 30000 for the SSVAE)
    iter_save: int = 10000
    run: int = 0
    seed: int = 0
    batch_size: int = None  # None: the model's reference default (97; 100 for the fsvae)
    lr: float = 1e-3
    data: str = "files"
    data_dir: str = None
    svhn_split: str = "extra"
    verify_checksums: bool = True
    out_dir: str = "runs"
    strategy: str = "default"
    devices: str = ""
    cpu_replicas: int = 0
    jit_compile: str = "auto"
    steps_per_execution: int = None  # None: auto (see resolve_steps_per_execution)
    log_every: int = 1000
    eval_repeats: int = 100
    iwae_samples: tuple = evaluate.IWAE_SAMPLES
    full_test: bool = True
    check_steps: int = 3000
    export: bool = True
    deterministic: bool = False
    verbose: int = None  # Keras fit verbosity; None: a live bar on a terminal, else a line per epoch

    def validate(self):
        """Fills in the model's defaults, then raises ConfigError for the first impossible
        setting."""
        if self.model not in models.MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of "
                              f"{', '.join(sorted(models.MODELS))}.")
        cls = models.get(self.model)
        if self.iter_max is None:
            self.iter_max = cls.reference_iter_max
        if self.z is None:
            self.z = cls.reference_z
        if self.batch_size is None:
            self.batch_size = cls.reference_batch_size
        if self.dataset is None:
            self.dataset = cls.datasets[0]
        if self.dataset not in cls.datasets:
            raise ConfigError(f"the {self.model} trains on {' or '.join(cls.datasets)}, not "
                              f"--dataset={self.dataset} (only the fsvae takes svhn).")
        if self.svhn_split not in svhn.TRAIN_SPLITS:
            raise ConfigError(f"--svhn_split must be one of {', '.join(svhn.TRAIN_SPLITS)}.")
        if self.gw < 0 or self.cw < 0:
            raise ConfigError(f"--gw and --cw must be >= 0, got gw={self.gw}, cw={self.cw}.")
        if self.z is not None and self.z <= 0:
            raise ConfigError(f"--z must be a positive integer, got {self.z}.")
        for name in ("k", "iter_max", "iter_save", "batch_size", "log_every", "eval_repeats",
                     "check_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name} must be a positive integer, got {getattr(self, name)}.")
        if self.run < 0 or self.seed < 0:
            raise ConfigError("--run and --seed must be non-negative.")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}.")
        if self.data not in ("files", "tfds"):
            raise ConfigError(f"unknown --data={self.data!r}; use 'files' (bundled MNIST, or "
                              f"--data_dir) or 'tfds'.")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown --strategy={self.strategy!r}; choose one of "
                              f"{', '.join(STRATEGIES)}.")
        if self.jit_compile not in JIT_CHOICES:
            raise ConfigError(f"--jit_compile must be one of {', '.join(JIT_CHOICES)}.")
        if self.steps_per_execution is not None:
            if self.steps_per_execution <= 0:
                raise ConfigError(f"--steps_per_execution must be a positive integer, got "
                                  f"{self.steps_per_execution}.")
            for name in ("iter_save", "log_every", "iter_max"):
                if getattr(self, name) % self.steps_per_execution:
                    raise ConfigError(f"--{name}={getattr(self, name)} must be a multiple of "
                                      f"--steps_per_execution={self.steps_per_execution} (or "
                                      f"leave --steps_per_execution unset to choose it).")
        if any(m <= 0 for m in self.iwae_samples):
            raise ConfigError(f"--iwae_samples must be positive, got {list(self.iwae_samples)}.")
        return self

    def _settings(self):
        """The model settings of this run: those its class lists in ``flags``, and z if given."""
        cls = models.get(self.model)
        names = cls.flags
        if "z" not in names and self.z not in (None, cls.reference_z):
            names = ("z",) + names
        return {name: getattr(self, name) for name in names}

    def model_kwargs(self):
        """Constructor arguments of the model."""
        kwargs = {_MODEL_ARGS[name]: value for name, value in self._settings().items()
                  if name in _MODEL_ARGS}
        if "dataset" in self._settings():
            kwargs["image_shape"] = models.fsvae.IMAGE_SHAPES[self.dataset]
        return kwargs

    def run_name(self):
        """The reference's run name, e.g. ``model=gmvae_z=10_k=500_run=0000`` or
        ``model=ssvae_gw=001_cw=100_run=0000``."""
        def text(value):
            return f"{int(value):03d}" if isinstance(value, float) and value.is_integer() \
                else str(value)
        settings = "".join(f"_{name}={text(value)}" for name, value in self._settings().items())
        return f"model={self.model}{settings}_run={self.run:04d}"


# TrainConfig field -> model constructor argument.
_MODEL_ARGS = {"z": "z_dim", "k": "k", "gw": "gw", "cw": "cw"}


# ------------------------------------------------------------------------------------ strategy
def ensure_logical_cpus(n):
    """Splits the CPU into ``n`` logical devices (for MirroredStrategy tests without GPUs).

    Must run before TensorFlow initialises its devices; if it already has, the existing logical
    CPUs are used when there are enough of them.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) >= n:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have < n:
            raise ConfigError(f"--cpu_replicas={n} needs {n} logical CPUs, but TensorFlow was "
                              f"already initialised with {have}; start a fresh process.") from None


def _device_id(name):
    """'/physical_device:GPU:0', '/device:GPU:0', '/gpu:0' or 'GPU:0' -> 'GPU:0'."""
    return name.upper().rsplit("DEVICE:", 1)[-1].lstrip("/")


def make_strategy(config):
    """The tf.distribute strategy of ``config``: ``default`` (one device), ``mirrored`` (devices of
    this machine) or ``multiworker`` (MultiWorkerMirroredStrategy over the hosts of TF_CONFIG)."""
    if config.strategy != "mirrored" and (config.cpu_replicas or config.devices):
        raise ConfigError("--cpu_replicas and --devices need --strategy=mirrored.")
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "multiworker":
        cluster_from_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if config.cpu_replicas:
        ensure_logical_cpus(config.cpu_replicas)
        devices = [f"/cpu:{i}" for i in range(config.cpu_replicas)]
    elif config.devices:
        devices = [d.strip() for d in config.devices.split(",") if d.strip()]
        known = {_device_id(d.name) for d in tf.config.list_physical_devices()}
        for d in devices:
            if _device_id(d) not in known:
                raise ConfigError(f"--devices names {d!r}, which this machine does not have "
                                  f"(it has: {', '.join(sorted(known))}).")
    else:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or ["/cpu:0"]
    return tf.distribute.MirroredStrategy(devices)


_TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}\' on host1 (index 1 on host2)')


def cluster_from_tf_config():
    """Checks the TF_CONFIG environment variable that MultiWorkerMirroredStrategy reads.

    Returns:
      ``(task_type, task_index, number of workers)``.
    Raises:
      ConfigError naming what is missing or wrong, with an example.
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ConfigError(f"--strategy=multiworker reads the cluster from the TF_CONFIG "
                          f"environment variable, which is not set. Set it on every host, e.g. "
                          f"{_TF_CONFIG_EXAMPLE}.")
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, index = task["type"], int(task["index"])
        workers = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
        hosts = cluster.get(task_type, [])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"TF_CONFIG is not a valid cluster description ({type(e).__name__}: "
                          f"{e}); it needs 'cluster' with a 'worker' list and 'task' with 'type' "
                          f"and 'index', e.g. {_TF_CONFIG_EXAMPLE}.") from None
    if task_type not in ("chief", "worker"):
        raise ConfigError(f"TF_CONFIG task type {task_type!r} is not supported by "
                          f"--strategy=multiworker; use 'worker' (or one 'chief').")
    if not workers:
        raise ConfigError(f"TF_CONFIG's cluster has no 'worker' addresses, e.g. "
                          f"{_TF_CONFIG_EXAMPLE}.")
    if not 0 <= index < len(hosts):
        raise ConfigError(f"TF_CONFIG task index {index} is outside the {len(hosts)} "
                          f"{task_type} address(es) of its cluster.")
    return task_type, index, len(workers)


def is_chief(strategy):
    """Whether this process writes the run's files: always, except on the non-chief workers of a
    multi-worker cluster (the chief is task 'chief', or else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 \
        and "chief" not in resolver.cluster_spec().as_dict()


def _worker_scratch(run_dir, strategy):
    """Where a non-chief worker writes what the chief writes for real (its checkpoints and
    logs must be written too: saving may need every worker, but only the chief's are kept)."""
    resolver = strategy.cluster_resolver
    return os.path.join(run_dir, "workers", f"{resolver.task_type}-{resolver.task_id}")


def resolve_jit(config, strategy):
    """``--jit_compile=auto``: XLA on a single replica for the models it clearly speeds up (the
    GMVAE and FSVAE; see README "Performance"), never under MirroredStrategy, where it fails on
    logical CPUs."""
    if config.jit_compile == "true":
        if strategy.num_replicas_in_sync > 1:
            raise ConfigError("--jit_compile=true fails under MirroredStrategy with more than one "
                              "replica on CPU; use --jit_compile=auto or false.")
        return True
    if config.jit_compile == "auto":
        return strategy.num_replicas_in_sync == 1 and models.get(config.model).xla_by_default
    return False


# Candidates for --steps_per_execution when it is not given, largest first.
AUTO_STEPS_PER_EXECUTION = (50, 25, 20, 10, 5, 4, 2, 1)


def resolve_steps_per_execution(config, start_step):
    """Training steps per call into the compiled function.

    Several steps per call save the Python and callback overhead of each step (measured: the VAE
    step from 10.5 to 6.3 ms with 50). Checkpoints, log lines, the stop at ``iter_max`` and the
    stop on Ctrl-C happen between calls, so the number must divide ``iter_save``, ``log_every``,
    ``iter_max`` and the step a run resumes from; unset, it is the largest of
    ``AUTO_STEPS_PER_EXECUTION`` that does.
    """
    needs = (config.iter_save, config.log_every, config.iter_max, start_step)
    if config.strategy != "default":
        # Keras 3.15's multi-step loop fails on our distributed streams under Mirrored and
        # MultiWorkerMirrored strategies ("You must feed a value for placeholder tensor
        # 'while/cond/Placeholder'"), so distributed runs take one step per call.
        if config.steps_per_execution not in (None, 1):
            raise ConfigError(f"--strategy={config.strategy} runs one step per call (Keras' "
                              f"multi-step loop fails under tf.distribute strategies here); leave "
                              f"--steps_per_execution unset.")
        return 1
    if config.steps_per_execution is None:
        return next(d for d in AUTO_STEPS_PER_EXECUTION if all(n % d == 0 for n in needs))
    if start_step % config.steps_per_execution:
        raise ConfigError(f"this run resumes at step {start_step}, which is not a multiple of "
                          f"--steps_per_execution={config.steps_per_execution}; leave "
                          f"--steps_per_execution unset to choose a fitting one.")
    return config.steps_per_execution


# ----------------------------------------------------------------------------------- callbacks
class StepCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint every ``every`` optimiser steps, at ``last`` and when a stop is
    requested (Ctrl-C, SIGTERM), and stops training at ``last`` (so that a run ends at exactly
    ``--iter_max`` steps, resumed or not).

    A non-finite metric (the loss terms of the step) or weight stops training at once without
    saving: ``self.failure`` then holds a :class:`Diverged` naming the step and the last good
    checkpoint. Weights are checked before every save, so a checkpoint never holds NaN.
    """

    def __init__(self, manager, every, last, stop_requested=lambda: False):
        super().__init__()
        self.manager, self.every, self.last = manager, every, last
        self.stop_requested = stop_requested
        self.failure = None
        self.interrupted_at = None
        self.first_step_at = None  # seconds from process start to the end of the first step

    def _diverged(self, step, what):
        self.model.stop_training = True
        if self.model.steps_per_execution > 1:  # the callback sees one call of several steps
            first = step - self.model.steps_per_execution + 1
            step = f"{step} (within steps {first}-{step}, run in one call; " \
                   f"--steps_per_execution=1 names the exact step)"
        last = self.manager.latest_checkpoint
        kept = (f"The last good checkpoint, {last}, is kept; starting the same command again "
                f"resumes from it" if last else "No checkpoint had been saved yet")
        self.failure = Diverged(
            f"training diverged at step {step}: {what} became non-finite. Training stopped and "
            f"nothing after the last good checkpoint was saved. {kept}. Lower --lr, or check "
            f"the data.")

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.first_step_at is None:
            self.first_step_at = process_age()
        bad = sorted(name for name, value in (logs or {}).items()
                     if not np.all(np.isfinite(np.asarray(value, np.float64))))
        if bad:
            return self._diverged(step, f"the training loss ({', '.join(bad)})")
        stop = self.stop_requested()
        if step % self.every == 0 or step >= self.last or stop:
            if not all(np.isfinite(w).all() for w in self.model.get_weights()):
                return self._diverged(step, "a model weight")
            self.manager.save(checkpoint_number=step)
        if stop:
            self.interrupted_at = step
        if step >= self.last or stop:
            self.model.stop_training = True


@contextlib.contextmanager
def stop_requests(enabled=True):
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a request that training polls at the next
    step boundary (so a checkpoint is saved first); a second Ctrl-C stops at once.

    Yields a function that tells whether a stop was requested. Signal handlers can only be set in
    the main thread; elsewhere (or with ``enabled=False``) signals keep their default behaviour.
    """
    requested = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.append(signum)
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this step, then "
              f"stopping (Ctrl-C again stops at once, losing the steps since the last "
              f"checkpoint).", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(requested)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def restore_latest(checkpoint, directory):
    """Restores the newest readable checkpoint in ``directory``; returns its path or None.

    TensorFlow publishes a checkpoint in the folder's ``checkpoint`` file only after writing it
    completely, so a crash while saving leaves the previous one as the newest. A checkpoint that
    was damaged later (disk full, a truncated copy) is reported and the one before it is used.
    """
    state = tf.train.get_checkpoint_state(directory)
    if state is None:
        return None
    candidates = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    for path in reversed(candidates):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
            return path
        except Exception as e:  # noqa: BLE001  Any unreadable checkpoint (TF raises OpError,
            # IndexError, ValueError or AssertionError, depending on the damage) means: use an
            # older one; restoring it assigns every variable again.
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"warning: checkpoint {path} cannot be restored ({first_line[:200]}); trying "
                  f"the one before it.", file=sys.stderr, flush=True)
    raise ConfigError(f"no checkpoint in {directory} can be restored into this model. Move the "
                      f"folder aside to start the run afresh.")


def process_age():
    """Seconds since this process started (Linux /proc; None elsewhere): start-up is measured
    from the launch of the interpreter, imports included."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None


def source_commit():
    """The git commit of the tfp_vae source tree, or None outside a git checkout."""
    import subprocess
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def weights_digest(model):
    """SHA-256 of all model weights (bitwise), to compare runs and workers."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


class SampleGrids(keras.callbacks.Callback):
    """Writes the model's sample grid to ``<folder>/step=NNNNNNN.png`` every ``every`` steps, so
    that a long run can be watched (the reference checks the FSVAE's grid every 10k steps)."""

    def __init__(self, folder, every, seed):
        super().__init__()
        self.folder, self.every, self.seed = folder, every, seed

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step % self.every == 0:
            write_grid(self.model, os.path.join(self.folder, f"step={step:07d}.png"), self.seed)


def write_grid(model, path, seed):
    """Writes ``model.sample_grid(seed)`` as a PNG at ``path``."""
    pictures, rows, cols = model.sample_grid(seed)
    return images.write_png(path, images.tile(np.asarray(pictures), rows, cols,
                                              *model.image_shape))


# ------------------------------------------------------------------------------------------ run
def build_model(config, strategy):
    """The model of ``config``, compiled, under ``strategy``."""
    cls = models.get(config.model)
    with strategy.scope():
        model = cls(seed=config.seed, **config.model_kwargs())
        # steps_per_execution is set once the step to resume from is known (run()).
        model.compile(optimizer=keras.optimizers.Adam(config.lr),
                      jit_compile=resolve_jit(config, strategy))
        model.optimizer.build(model.trainable_variables)
    return model


# Settings that a resumed run must share with the run it continues (the others, such as
# --iter_max, --iter_save or the evaluation settings, may change between starts).
RESUME_SETTINGS = ("model", "dataset", "z", "k", "gw", "cw", "seed", "batch_size", "lr", "data",
                   "svhn_split")


def check_resume_settings(run_dir, config):
    """Refuses to continue a run with settings other than those it was started with."""
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            before = json.load(f)
    except (OSError, ValueError):
        return  # No record (or an unreadable one, from a crash before its rename): nothing to compare.
    now = dataclasses.asdict(config)
    changed = [name for name in RESUME_SETTINGS if name in before and before[name] != now[name]]
    if changed:
        was = " ".join(f"--{name}={before[name]}" for name in changed)
        asked = " ".join(f"--{name}={now[name]}" for name in changed)
        raise ConfigError(f"{run_dir} has checkpoints of a run started with {was}, but this "
                          f"command asks for {asked}. Resume with the same settings, or start a "
                          f"new run with another --run (or --out_dir).")


def run(config):
    """Trains (or resumes) the run of ``config``, then evaluates, draws samples and exports.

    Returns:
      The evaluation dictionary that is also written to ``evaluation.json`` (on a non-chief
      worker of a multi-worker run, only the steps and the weights digest).
    Raises:
      ConfigError, DataError: a setting or the data is wrong (nothing was trained).
      Diverged: a non-finite loss or weight; the last good checkpoint is kept.
      Interrupted: Ctrl-C or SIGTERM; a checkpoint of the current step was saved.
    """
    config.validate()
    started = time.time()
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config)
    chief = is_chief(strategy)
    dataset = load_data(config)
    run_dir = os.path.join(config.out_dir, config.run_name())
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    # Non-chief workers save into scratch folders (saving needs every worker) and restore from
    # the chief's checkpoints, which all hosts must see (a shared file system).
    scratch = None if chief else _worker_scratch(run_dir, strategy)
    os.makedirs(run_dir, exist_ok=True)
    if tf.train.latest_checkpoint(checkpoint_dir):
        check_resume_settings(run_dir, config)
    if chief:
        files.write_bytes_atomic(os.path.join(run_dir, "config.json"),
                                 json.dumps(dataclasses.asdict(config), indent=1).encode())
    keras.utils.set_random_seed(config.seed)
    model = build_model(config, strategy)

    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(
        checkpoint, checkpoint_dir if chief else os.path.join(scratch, "checkpoints"),
        max_to_keep=3)
    restored = restore_latest(checkpoint, checkpoint_dir)
    if restored:
        print(f"resumed from {restored}", flush=True)
    start = int(model.optimizer.iterations.numpy())
    model.steps_per_execution = resolve_steps_per_execution(config, start)

    train_seconds, startup_seconds = 0.0, None
    if start < config.iter_max:
        stream = training_data(model, dataset, config, start)
        # Under multiworker every worker must stop at the same step: a signal reaching one
        # worker cannot be shared, so signals keep their default effect there (resume from the
        # last periodic checkpoint).
        with stop_requests(enabled=config.strategy != "multiworker") as stop_requested:
            saver = StepCheckpoint(manager, config.iter_save, config.iter_max, stop_requested)
            callbacks = [saver]
            if chief:
                callbacks += [SampleGrids(os.path.join(run_dir, "samples"), config.iter_save,
                                          config.seed),
                              keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"))]
            t0 = time.time()
            model.fit(stream, epochs=math.ceil(config.iter_max / config.log_every),
                      initial_epoch=start // config.log_every, steps_per_epoch=config.log_every,
                      callbacks=callbacks, shuffle=False,
                      verbose=config.verbose if config.verbose is not None else
                      (1 if sys.stdout.isatty() else 2))
            train_seconds = time.time() - t0
        startup_seconds = saver.first_step_at
        if saver.failure is not None:
            raise saver.failure
        if saver.interrupted_at is not None:
            raise Interrupted(f"stopped at step {saver.interrupted_at} of {config.iter_max}; "
                              f"checkpoint saved in {manager.latest_checkpoint}. Start the same "
                              f"command again to resume.")
    steps = int(model.optimizer.iterations.numpy())
    digest = weights_digest(model)
    if startup_seconds is not None:
        print(f"start-up: {startup_seconds:.1f} s from launch to the end of the first step",
              flush=True)
    print(f"step {steps}: weights sha256 {digest}", flush=True)

    results = {"run": config.run_name(), "steps": steps, "resumed_from_step": start,
               "train_seconds": round(train_seconds, 2),
               "train_steps_per_second":
                   round((steps - start) / train_seconds, 2) if steps > start else None,
               "startup_seconds": startup_seconds, "weights_sha256": digest,
               "commit": source_commit()}
    if not chief:
        shutil.rmtree(scratch, ignore_errors=True)
        with contextlib.suppress(OSError):  # Empty once every worker has finished.
            os.rmdir(os.path.dirname(scratch))
        return results
    results.update(evaluate_model(model, dataset, config))
    results["wall_seconds"] = round(time.time() - started, 2)
    print(evaluate.format_table(results), flush=True)

    write_grid(model, os.path.join(run_dir, "samples.png"), config.seed)
    if "classifier" in results:
        images.write_png(os.path.join(run_dir, "confusion.png"),
                         images.heatmap(results["classifier"]["confusion"]))
    if config.export:
        export.export(model, os.path.join(run_dir, "savedmodel"))
    files.write_bytes_atomic(os.path.join(run_dir, "evaluation.json"),
                             json.dumps(results, indent=1).encode())
    return results


def load_data(config):
    """The :class:`~tfp_vae.data.ImageSet` of ``config.dataset`` from ``config.data``."""
    if config.dataset == "svhn":
        return svhn.load_svhn(config.data_dir, config.data, config.svhn_split)
    return data.load_mnist(config.data_dir, config.data, config.verify_checksums)


def training_data(model, dataset, config, start_step):
    """The training stream of the model's kind, from ``start_step`` on."""
    if model.data_kind == "semisupervised":
        xl, yl = data.labelled_subset(dataset)
        return data.semisupervised_dataset(dataset.train_images, dataset.train_labels, xl, yl,
                                           config.batch_size, config.seed, start_step)
    if model.data_kind == "supervised":  # continuous images and their labels, as the reference
        return data.train_dataset(dataset.train_images, config.batch_size, config.seed,
                                  start_step, binarized=False, labels=dataset.train_labels)
    return data.train_dataset(dataset.train_images, config.batch_size, config.seed, start_step)


def evaluate_model(model, dataset, config):
    """Unsupervised models: the reference protocol on the 100-image subset and (``full_test``)
    the 10k test set. Classifiers: accuracy on the 10k continuous test images (the reference
    metric) and the confusion matrix, and the test NELBO. Conditional models: the bounds of
    log p(x | y) on the continuous test set, and how often a separately trained classifier
    recognises the requested class in 1000 conditional samples."""
    elbo, iwae = evaluate.model_bounds(model)
    if model.data_kind == "supervised":
        x_test = data.to_unit_interval(dataset.test_images)
        y_test = dataset.test_labels.astype(np.int32)
        results = {}
        if config.full_test:
            t0 = time.time()
            results["full_test"] = evaluate.full_test_set(elbo, iwae, x_test, y_test)
            results["full_test_eval_seconds"] = round(time.time() - t0, 2)
        t0 = time.time()
        checker = evaluate.train_check_classifier(dataset, config.check_steps, seed=config.seed)
        results["sample_check"] = evaluate.conditional_sample_accuracy(
            model, checker, per_class=100, seed=config.seed)
        results["sample_check_seconds"] = round(time.time() - t0, 2)
        return results
    if model.data_kind == "semisupervised":
        results = {"classifier": evaluate.classifier_accuracy(
            model, data.to_unit_interval(dataset.test_images), dataset.test_labels)}
        if config.full_test:
            x_test, _ = data.full_test_set(dataset)
            results["full_test"] = evaluate.full_test_set(elbo, iwae, x_test)
        return results
    x_subset, _ = data.test_subset(dataset)
    t0 = time.time()
    results = {"subset": evaluate.reference_protocol(elbo, iwae, x_subset, seed=0,
                                                     repeats=config.eval_repeats,
                                                     iwae_samples=config.iwae_samples)}
    results["subset_eval_seconds"] = round(time.time() - t0, 2)
    if config.full_test:
        t0 = time.time()
        x_test, _ = data.full_test_set(dataset)
        results["full_test"] = evaluate.full_test_set(elbo, iwae, x_test)
        results["full_test_eval_seconds"] = round(time.time() - t0, 2)
    return results
