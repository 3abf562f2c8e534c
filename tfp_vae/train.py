"""Training runs: strategy, data, ``model.fit``, checkpoints, evaluation, pictures and export.

``bin/train`` turns its flags into a :class:`TrainConfig` and calls :func:`run`; scripts can do
the same. A run lives in ``<out_dir>/<run name>/`` (the reference's names, e.g.
``model=vae_z=10_run=0000``)::

    checkpoints/       tf.train.Checkpoint of model + optimizer every iter_save steps
    logs/              TensorBoard: train/ (Keras: nelbo, kl, rec, ... every log_every steps),
                       samples/ (the sample grid every iter_save steps), evaluation/ (the
                       pictures below and the evaluation's numbers, at the end)
    config.json        the configuration of the run
    evaluation.json    the evaluation at the end (also printed as a table)
    samples.png        200 samples, 10 x 20 (the FSVAE's: row = class, column = shared z)
    history.csv        the training metrics every log_every steps (Keras CSVLogger, with the step)
    curves.png, iwae.png, latent.png, reconstructions.png   see tfp_vae.pictures
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
import json
import math
import os
import shutil
import sys
import time

import keras
import tensorflow as tf

from tfp_vae import (callbacks, data, distribute, evaluate, export, files, guard, memory,
                     models, optimizers, pictures, sources)
from tfp_vae.config import Settings
from tfp_vae.errors import ConfigError, Diverged, Interrupted  # noqa: F401 (re-exported)


class TrainConfig(Settings):
    """The settings of a run (:class:`tfp_vae.config.Settings`, one field per ``bin/train``
    flag, checked there without TensorFlow) with what needs the models: their reference
    defaults and the data they take."""

    def validate(self):
        """Fills in the model's defaults, then raises ConfigError for the first impossible
        setting."""
        cls = models.MODELS.get(self.model)
        if cls is not None:  # an unknown model is check()'s to refuse
            if self.iter_max is None:
                self.iter_max = cls.reference_iter_max
            if self.z is None:
                self.z = cls.reference_z
            if self.batch_size is None:
                self.batch_size = cls.reference_batch_size
        self.check()  # with the defaults: --steps_per_execution must divide iter_max too
        if self.objective != "elbo" and cls.data_kind != "unsupervised":
            unsupervised = [kind for kind, model_class in sorted(models.MODELS.items())
                            if model_class.data_kind == "unsupervised"]
            raise ConfigError(f"--objective={self.objective} trains the unsupervised models "
                              f"({', '.join(unsupervised)}); the {self.model} trains on its "
                              f"ELBO.")
        return self

    def resolve(self, dataset):
        """Settles what depends on the data (``--likelihood=auto``) and checks that the model can
        train on ``dataset`` (an :class:`~tfp_vae.sources.ImageSet`)."""
        cls = models.get(self.model)
        if self.likelihood == "auto":
            self.likelihood = default_likelihood(cls, dataset)
        if cls.data_kind != "unsupervised" and not dataset.labelled:
            raise ConfigError(f"the {self.model} needs labels, but {dataset.name} ({dataset.source}) "
                              f"has none; give the data labels, or train the vae or gmvae.")
        if cls.data_kind != "unsupervised" and dataset.num_classes < 2:
            raise ConfigError(f"the {self.model} needs at least 2 classes; {dataset.name} has "
                              f"{dataset.num_classes}.")
        return self

    def _settings(self, dataset):
        """The model settings of this run, in run-name order: the data when it is not the
        model's default (always for the fsvae, as before), those its class lists in ``flags``, z
        if given, and the network and likelihood when not the defaults."""
        cls = models.get(self.model)
        names = cls.flags
        if "z" not in names and self.z not in (None, cls.reference_z):
            names = ("z",) + names
        settings = {name: getattr(self, name) for name in names if name != "dataset"}
        if "dataset" in names or dataset.name != cls.default_dataset:
            settings = {"dataset": dataset.name, **settings}
        if self.arch != "mlp":
            settings["arch"] = self.arch
        if self.likelihood != default_likelihood(cls, dataset):
            settings["likelihood"] = self.likelihood
        if cls.data_kind == "semisupervised" and self.labels_per_class != 10:
            settings["labels"] = self.labels_per_class
        if self.objective != "elbo":
            settings["objective"] = f"{self.objective}{self.train_samples}"
        return settings

    def recorded(self, dataset):
        """The settings ``config.json`` records: every field that applies to this model, data and
        strategy (a VAE's has no ``k``, ``gw`` or ``cw``; SVHN's split only for SVHN; device
        settings only for ``--strategy=mirrored``)."""
        cls = models.get(self.model)
        unused = set()
        unused |= {"k", "pseudo_inputs"} - set(cls.flags)
        if cls.data_kind != "unsupervised":
            unused.add("objective")
        if self.objective != "iwae":
            unused.add("train_samples")
        if cls.data_kind != "semisupervised":
            unused |= {"gw", "cw", "labels_per_class"}
        if cls.data_kind != "supervised":
            unused.add("check_steps")
        if cls.data_kind != "unsupervised":  # the subset protocol is the VAE's and GMVAE's
            unused |= {"eval_repeats", "iwae_samples"}
        if dataset.name != "svhn":
            unused.add("svhn_split")
        if self.strategy != "mirrored":
            unused |= {"devices", "cpu_replicas"}
        if self.strategy != "multiworker":
            unused.add("peer_timeout")
        return {name: value for name, value in dataclasses.asdict(self).items()
                if name not in unused}

    def model_kwargs(self, dataset):
        """Constructor arguments of the model for ``dataset``."""
        kwargs = {_MODEL_ARGS[name]: getattr(self, name)
                  for name in models.get(self.model).flags + ("z",) if name in _MODEL_ARGS}
        kwargs.update(image_shape=dataset.image_shape, likelihood=self.likelihood, arch=self.arch)
        if models.get(self.model).data_kind != "unsupervised":
            kwargs["num_classes"] = dataset.num_classes
        elif self.objective != "elbo":
            kwargs.update(objective=self.objective, train_samples=self.train_samples)
        return kwargs

    def run_name(self, dataset):
        """The reference's run name, e.g. ``model=gmvae_z=10_k=500_run=0000`` or
        ``model=ssvae_gw=001_cw=100_run=0000``; other data adds ``dataset=NAME``."""
        def text(value):
            return f"{int(value):03d}" if isinstance(value, float) and value.is_integer() \
                else str(value)
        settings = "".join(f"_{name}={text(value)}"
                           for name, value in self._settings(dataset).items())
        return f"model={self.model}{settings}_run={self.run:04d}"


def default_likelihood(cls, dataset):
    """The likelihood of ``--likelihood=auto``: the model's own (the FSVAE's Gaussian), else the
    reference's Bernoulli for grey images and the FSVAE's fixed-variance Gaussian for colour."""
    if cls.default_likelihood:
        return cls.default_likelihood
    return "bernoulli" if dataset.image_shape[2] == 1 else "gaussian"


# TrainConfig field -> model constructor argument.
_MODEL_ARGS = {"z": "z_dim", "k": "k", "pseudo_inputs": "pseudo_inputs", "gw": "gw", "cw": "cw"}


def resolve_jit(config, strategy):
    """``--jit_compile=auto``: XLA on a single replica for the models it speeds up (every model
    with the reference's MLPs; see docs/performance.md) in runs of at least ``XLA_MIN_STEPS``
    steps, never under MirroredStrategy, where it fails on logical CPUs."""
    if config.jit_compile == "true":
        if strategy.num_replicas_in_sync > 1:
            raise ConfigError("--jit_compile=true fails under MirroredStrategy with more than one "
                              "replica on CPU; use --jit_compile=auto or false.")
        return True
    if config.jit_compile == "auto":
        # XLA slows the convolutional networks on CPU (VAE: 49.4 -> 85.6 ms per step,
        # benchmarks/settings.py --settings=50:0:default:conv,50:1:default:conv). Its
        # compilation (about 2 s for the VAE) pays back only over many steps (about 1.5 ms saved
        # per VAE step), so short runs skip it; the choice depends on --iter_max, never on the
        # step resumed from, so a resumed run computes exactly as the uninterrupted one.
        return (strategy.num_replicas_in_sync == 1 and models.get(config.model).xla_by_default
                and config.arch == "mlp" and config.iter_max >= XLA_MIN_STEPS)
    return False


# --jit_compile=auto compiles with XLA only runs of at least this many steps (see resolve_jit).
XLA_MIN_STEPS = 2000


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


# ------------------------------------------------------------------------------------------ run
def make_optimizer(lr, jit_compile=False):
    """The optimiser of a run: Adam (the reference's). Without XLA, with TensorFlow's fused
    update kernel (:class:`tfp_vae.optimizers.FusedAdam`: the same update, measured 0.7 to 1.4
    ms per step faster, ``benchmarks/breakdown.py``); under XLA, which fuses Keras' Adam itself
    (both measured 0.3 ms), ``keras.optimizers.Adam``, which measured as fast or faster in the
    whole step there (``benchmarks/settings.py --model=fsvae``)."""
    return keras.optimizers.Adam(lr) if jit_compile else optimizers.FusedAdam(lr)


def check_memory(config, strategy, dataset):
    """Refuses a model that cannot fit in memory (a huge ``--z`` or ``--k``) before building it:
    the estimate of :meth:`~tfp_vae.models.BaseVAE.training_bytes` on every replica against the
    memory available (:mod:`tfp_vae.memory`). Small settings (``z * k`` up to 4096 and up to
    10,000 image-samples a step: a few hundred MiB at most) are not estimated, which would cost
    start-up time."""
    kwargs = config.model_kwargs(dataset)
    cls = models.get(config.model)
    components = kwargs.get(cls.components_arg, 1) if cls.components_arg else 1
    samples = kwargs.get("train_samples", 1)
    if kwargs["z_dim"] * components <= 4096 and config.batch_size * samples <= 10_000:
        return
    need = strategy.num_replicas_in_sync * cls.training_bytes(config.batch_size, **kwargs)
    sizes = ("z",) + ((cls.components_arg,) if cls.components_arg else ()) + \
        (("train_samples",) if "train_samples" in kwargs else ())
    memory.require(need, f"--model={config.model} "
                   + " ".join(f"--{flag}={getattr(config, flag)}" for flag in sizes)
                   + f" (batch {config.batch_size})",
                   "choose a smaller " + " or ".join(f"--{flag}" for flag in sizes))


def build_model(config, strategy, dataset):
    """The model of ``config`` for ``dataset``, compiled, under ``strategy``."""
    cls = models.get(config.model)
    with strategy.scope():
        model = cls(seed=config.seed, **config.model_kwargs(dataset))
        # steps_per_execution is set once the step to resume from is known (run()).
        jit = resolve_jit(config, strategy)
        model.compile(optimizer=make_optimizer(config.lr, jit), jit_compile=jit)
        model.optimizer.build(model.trainable_variables)
    return model


def run(config):
    """Trains (or resumes) the run of ``config``, then evaluates, draws samples and exports.

    Returns:
      The evaluation dictionary that is also written to ``evaluation.json`` (on a non-chief
      worker of a multi-worker run, only the steps and the weights digest).
    Raises:
      ConfigError, DataError: a setting or the data is wrong (nothing was trained), or another
        process is training the same run folder.
      Diverged: a non-finite loss or weight; the last good checkpoint is kept.
      Interrupted: Ctrl-C or SIGTERM; a checkpoint of the current step was saved.
    """
    with contextlib.ExitStack() as held:  # the run folder's lock, until the run ends
        return _run(config, held)


def _run(config, held):
    config.validate()
    started = time.time()
    files.writable_dir(config.out_dir, "--out_dir")  # before anything long
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = distribute.make_strategy(config)
    chief = distribute.is_chief(strategy)
    dataset = load_data(config)
    config.resolve(dataset)
    print(f"data: {dataset.describe()}", flush=True)
    check_memory(config, strategy, dataset)
    identity = data_identity(config, dataset)
    run_dir = os.path.join(config.out_dir, config.run_name(dataset))
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    # Non-chief workers save into scratch folders (saving needs every worker) and restore from
    # the chief's checkpoints, which all hosts must see (a shared file system).
    scratch = None if chief else distribute.worker_scratch(run_dir, strategy)
    files.writable_dir(run_dir, "the run folder")
    if chief:
        print(f"run folder: {os.path.abspath(run_dir)}", flush=True)
        files.writable_dir(checkpoint_dir, "the checkpoint folder")
        held.enter_context(guard.run_lock(run_dir))
        if os.path.isdir(checkpoint_dir):
            guard.set_aside_damaged_state(checkpoint_dir)
    settings = {**config.recorded(dataset), **identity}
    if guard.checkpoint_paths(checkpoint_dir):
        guard.check_resume_settings(run_dir, settings)
    if chief:
        files.write_bytes_atomic(os.path.join(run_dir, "config.json"),
                                 json.dumps(settings, indent=1).encode())
    keras.utils.set_random_seed(config.seed)
    model = build_model(config, strategy, dataset)

    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(
        checkpoint, checkpoint_dir if chief else os.path.join(scratch, "checkpoints"),
        max_to_keep=3)
    restored = guard.restore_latest(checkpoint, checkpoint_dir)
    if restored:
        print(f"resumed from {restored}", flush=True)
    start = int(model.optimizer.iterations.numpy())
    if start > config.iter_max:
        raise ConfigError(f"{run_dir} has trained {start} steps already, more than "
                          f"--iter_max={config.iter_max}; pass --iter_max={start} (or more) to "
                          f"evaluate or continue it, or another --run to start afresh.")
    model.steps_per_execution = resolve_steps_per_execution(config, start)
    history = os.path.join(run_dir, "history.csv")
    if chief:
        guard.trim_history(history, start, config.log_every)

    train_seconds, startup_seconds = 0.0, None
    if start < config.iter_max:
        stream = training_data(model, dataset, config, start)
        # Under multiworker every worker must stop at the same step: TensorFlow's preemption
        # handler agrees on it across the cluster.
        stops = (distribute.cluster_stop_requests(strategy) if config.strategy == "multiworker"
                 else guard.stop_requests())
        with stops as stop_requested:
            saver = guard.StepCheckpoint(manager, config.iter_save, config.iter_max,
                                         stop_requested)
            watchers = [saver]
            if chief:
                logs = os.path.join(run_dir, "logs")
                watchers += [callbacks.SampleGrids(os.path.join(run_dir, "samples"),
                                                   config.iter_save, config.seed,
                                                   os.path.join(logs, "samples")),
                             callbacks.Validation(validation_batch(model, dataset), config.seed),
                             callbacks.StepBoard(logs),
                             callbacks.HistoryCSV(history, append=True)]
            t0 = time.time()
            model.fit(stream, epochs=math.ceil(config.iter_max / config.log_every),
                      initial_epoch=start // config.log_every, steps_per_epoch=config.log_every,
                      callbacks=watchers, shuffle=False,
                      verbose=config.verbose if config.verbose is not None else
                      (1 if sys.stdout.isatty() else 2))
            train_seconds = time.time() - t0
        age = process_age()
        if saver.first_step_at is not None and age is not None:
            startup_seconds = round(saver.first_step_at - (time.time() - age), 2)
        if saver.failure is not None:
            raise saver.failure
        if saver.interrupted_at is not None:
            raise Interrupted(f"stopped at step {saver.interrupted_at} of {config.iter_max}; "
                              f"checkpoint saved in {manager.latest_checkpoint}. Start the same "
                              f"command again to resume.")
    steps = int(model.optimizer.iterations.numpy())
    digest = guard.weights_digest(model)
    if startup_seconds is not None:
        print(f"start-up: {startup_seconds:.1f} s from launch to the end of the first step",
              flush=True)
    print(f"step {steps}: weights sha256 {digest}", flush=True)

    results = {"run": config.run_name(dataset), "steps": steps, "resumed_from_step": start,
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

    if config.export:
        export.export(model, os.path.join(run_dir, "savedmodel"), data=identity)
    files.write_bytes_atomic(os.path.join(run_dir, "evaluation.json"),
                             json.dumps(results, indent=1).encode())
    written = pictures.write_all(run_dir, results, dataset, model.binarized, model.image_shape,
                                 *pictures.keras_functions(model),
                                 grid=model.sample_grid(config.seed),
                                 history=history,
                                 log_every=config.log_every)
    if model.kind == "vampprior":
        written.append(pictures.pseudo_inputs(model.prior_layer.inputs().numpy(),
                                              model.image_shape,
                                              os.path.join(run_dir, "pseudo_inputs.png")))
    pictures.to_tensorboard(os.path.join(run_dir, "logs", "evaluation"), written, results, steps)
    where = os.path.abspath(run_dir)
    lines = [f"results in {where}:",
             "  " + ", ".join(["evaluation.json"] + [os.path.basename(p) for p in written])]
    if config.export:
        lines.append(f"  savedmodel/   bin/sample --model_dir={os.path.join(where, 'savedmodel')}")
    lines.append(f"  logs/         tensorboard --logdir {os.path.join(where, 'logs')}")
    print("\n".join(lines), flush=True)
    return results


def load_data(config):
    """The :class:`~tfp_vae.sources.ImageSet` of ``config`` (:func:`tfp_vae.sources.load`)."""
    return sources.load(config.dataset, config.data_dir, config.memory_budget,
                        config.verify_checksums, config.svhn_split,
                        default=models.get(config.model).default_dataset)


def data_identity(config, dataset):
    """What names the data of a run, recorded in ``config.json`` and the SavedModel: resuming
    on other data is refused, and ``bin/evaluate`` finds the test set by it."""
    data_dir = config.data_dir and os.path.abspath(os.path.expanduser(config.data_dir))
    return {"data_name": dataset.name, "data_source": dataset.source,
            "data_sha256": dataset.fingerprint, "data_spec": config.dataset,
            "data_dir_resolved": data_dir}


def validation_batch(model, dataset):
    """The held-out data of the validation curve (:class:`tfp_vae.callbacks.Validation`): the
    first 1,000 test images (:func:`tfp_vae.data.validation_set`), with their labels for the
    models that take labels."""
    x, labels = data.validation_set(dataset, model.binarized)
    return x if model.data_kind == "unsupervised" else (x, labels)


def training_data(model, dataset, config, start_step):
    """The training stream of the model's kind, from ``start_step`` on
    (:func:`tfp_vae.data.stream`)."""
    return data.stream(dataset, config.batch_size, config.seed, model.data_kind, model.binarized,
                       start_step, config.labels_per_class)


def evaluate_model(model, dataset, config):
    """The evaluation of :func:`tfp_vae.evaluate.evaluate` for a trained Keras model."""
    elbo, iwae = evaluate.model_bounds(model)
    return evaluate.evaluate(model.data_kind, elbo, iwae, dataset, binarized=model.binarized,
                             repeats=config.eval_repeats, iwae_samples=config.iwae_samples,
                             full_test=config.full_test, classify=model, sampler=model,
                             check_steps=config.check_steps, seed=config.seed,
                             nll_samples=config.nll_samples)
