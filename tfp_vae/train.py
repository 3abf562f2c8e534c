"""Training runs: strategy, data, ``model.fit``, checkpoints, evaluation, pictures and export.

``bin/train`` turns its flags into a :class:`~tfp_vae.settings.Settings` and calls :func:`run`;
scripts can do the same: ``train.run(Settings(model="gmvae", k=100, iter_max=5000))``. A run
lives in ``<out_dir>/<run name>/`` (the reference's names, e.g.
``model=vae_z=10_run=0000``)::

    checkpoints/       tf.train.Checkpoint of model + optimizer every iter_save steps
    logs/              TensorBoard: train/ (Keras: nelbo, kl, rec, ... every log_every steps),
                       samples/ (the sample grid every iter_save steps), evaluation/ (the
                       pictures below and the evaluation's numbers, at the end)
    config.json        the configuration of the run
    evaluation.json    the evaluation at the end (also printed as a table)
    MODEL_CARD.md      with --recipe: the paper's number beside the run's (tfp_vae.cards)
    samples.png        200 samples, 10 x 20 (the FSVAE's: row = class, column = shared z)
    history.csv        the training metrics every log_every steps (Keras CSVLogger, with the step)
    curves.png, iwae.png, latent.png, reconstructions.png   see tfp_vae.pictures
    samples/           the same grid every iter_save steps
    savedmodel/        the SavedModel (signatures: see BaseVAE.export_endpoints)

Starting the same run again resumes from its last checkpoint: the optimiser state and the step
counter are restored, and the data stream and every random draw continue where they stopped
(they are stateless functions of the seed and the step).

Reliability (see docs/reliability.md): checkpoints are published by TensorFlow only once
complete, and JSON, PNG and SavedModel files are written to a temporary path and renamed, so a
run killed at any moment (SIGKILL included) resumes from its last checkpoint and ends at exactly
``iter_max`` steps. Ctrl-C or SIGTERM saves a checkpoint at the current step before stopping; a
non-finite loss or weight stops training at once and keeps the last good checkpoint; a resumed run
must have the settings it was started with.
"""

import contextlib
import copy
import dataclasses
import json
import logging
import os
import random
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfp_vae import (callbacks, cards, checkpoints, data, distribute, evaluate, export, files,
                     memory, pictures, rundir, schedules, sources, tasks)
from tfp_vae.errors import ConfigError, Interrupted
from tfp_vae.settings import SINCE_ADDED, Settings  # noqa: F401  (train.Settings)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Run:
    """What the phases of a run share: its settings, strategy, data and folder."""
    settings: object
    strategy: object
    chief: bool
    dataset: object
    task: object
    folder: str
    identity: dict
    started: float
    scratch: str = None  # a non-chief worker's own folder
    model: object = None
    manager: object = None
    start_step: int = 0
    best: object = None  # callbacks.BestWeights of a run with early stopping
    commit: str = None  # the source's commit when the run started (a later commit is not its code)

    @property
    def checkpoint_dir(self):
        return os.path.join(self.folder, "checkpoints")

    @property
    def history(self):
        return os.path.join(self.folder, "history.csv")


def run(settings):
    """Trains (or resumes) the run of ``settings``, then evaluates, draws samples and exports.

    ``settings`` is left as given (the run resolves a copy), so one object can start several
    runs. The run seeds Keras' initialisers through ``keras.utils.set_random_seed``; Python's and
    NumPy's global random states are put back afterwards, TensorFlow's global seed stays the
    run's, and ``deterministic=True`` leaves TensorFlow's op determinism on for the process
    (TensorFlow has no public switch to turn it off).

    Returns:
      The evaluation dictionary that is also written to ``evaluation.json`` (on a non-chief
      worker of a multi-worker run, only the steps and the weights digest).
    Raises:
      ConfigError, DataError: a setting or the data is wrong (nothing was trained), or another
        process is training the same run folder.
      Diverged: a non-finite loss or weight; the last good checkpoint is kept.
      Interrupted: Ctrl-C or SIGTERM; a checkpoint of the current step was saved.
    """
    settings = copy.deepcopy(settings).resolve()
    with contextlib.ExitStack() as held:  # the run folder's lock, until the run ends
        held.enter_context(global_random_state_kept())
        state = prepare(settings, held)
        build(state)
        timing = fit(state)
        return finish(state, timing)


@contextlib.contextmanager
def global_random_state_kept():
    """Python's and NumPy's global random states as they were before, after the block (which
    calls ``keras.utils.set_random_seed``, as a library should not leave them)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def prepare(settings, held):
    """The strategy, the data and the run folder (locked, its settings checked and recorded)."""
    started = time.time()
    files.writable_dir(settings.out_dir, "--out_dir")  # before anything long
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = distribute.make_strategy(settings)
    dataset = sources.load(settings.dataset, settings.data_dir, settings.memory_budget,
                           settings.verify_checksums, settings.svhn_split,
                           default=settings.kind.dataset, pixel_max=settings.pixel_max)
    if settings.validation:
        dataset = data.hold_out(dataset, settings.validation)
    settings.to_steps(dataset)  # durations in epochs (a recipe's, --epochs) made steps
    if settings.likelihood == "auto":
        settings.likelihood = settings.default_likelihood(dataset)
    task = tasks.get(settings.kind.task)
    task.check(settings.model, dataset)
    log.info("data: %s", dataset.describe())
    check_memory(settings, strategy, dataset)
    state = Run(settings, strategy, distribute.is_chief(strategy), dataset, task,
                os.path.join(settings.out_dir, settings.run_name(dataset)),
                data_identity(settings, dataset), started, commit=source_commit())
    # Non-chief workers save into scratch folders (saving needs every worker) and restore from
    # the chief's checkpoints, which all hosts must see (a shared file system).
    state.scratch = None if state.chief else distribute.worker_scratch(state.folder, strategy)
    files.writable_dir(state.folder, "the run folder")
    recorded = settings.recorded(state.identity)
    if state.chief:
        log.info("run folder: %s", os.path.abspath(state.folder))
        files.writable_dir(state.checkpoint_dir, "the checkpoint folder")
        held.enter_context(rundir.run_lock(state.folder))
        if os.path.isdir(state.checkpoint_dir):
            checkpoints.set_aside_damaged_state(state.checkpoint_dir)
    if checkpoints.checkpoint_paths(state.checkpoint_dir):
        rundir.check_resume_settings(state.folder, recorded, settings.identity(),
                                     assumed=SINCE_ADDED)
    if state.chief:
        files.write_bytes_atomic(os.path.join(state.folder, "config.json"),
                                 json.dumps(recorded, indent=1).encode())
    return state


def build(state):
    """The compiled model, restored from the run's newest checkpoint if it has one."""
    settings = state.settings
    keras.utils.set_random_seed(settings.seed)
    state.model = model = build_model(settings, state.strategy, state.dataset)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    own = state.checkpoint_dir if state.chief else os.path.join(state.scratch, "checkpoints")
    state.manager = tf.train.CheckpointManager(checkpoint, own, max_to_keep=3)
    restored = checkpoints.restore_latest(checkpoint, state.checkpoint_dir)
    if restored:
        log.info("resumed from %s", restored)
    state.start_step = start = int(model.optimizer.iterations.numpy())
    if start > settings.iter_max:
        raise ConfigError(f"{state.folder} has trained {start} steps already, more than "
                          f"--iter_max={settings.iter_max}; pass --iter_max={start} (or more) to "
                          f"evaluate or continue it, or another --run to start afresh.")
    model.steps_per_execution = resolve_steps_per_execution(settings)
    if state.chief:
        rundir.trim_history(state.history, start, settings.log_every)


def fit(state):
    """Trains from the restored step to ``iter_max``; returns ``(train_seconds, startup_seconds)``.
    Raises what stopped it early (a divergence, a failed save, a stop request)."""
    settings, model = state.settings, state.model
    if settings.patience and state.chief:
        state.best = callbacks.BestWeights(os.path.join(state.folder, "best"), settings.patience,
                                           not_before=settings.kl_warmup)
    if state.start_step >= settings.iter_max or (state.best and state.best.stopped_at):
        return 0.0, None
    # Under multiworker every worker must stop at the same step: TensorFlow's preemption handler
    # agrees on it across the cluster.
    stops = (distribute.cluster_stop_requests(state.strategy)
             if settings.strategy == "multiworker" else checkpoints.stop_requests())
    with stops as stop_requested:
        saver = checkpoints.StepCheckpoint(state.manager, settings.iter_save, settings.iter_max,
                                           stop_requested)
        grids, loggers = watchers(state)
        t0 = time.time()
        try:
            for first, steps, epochs, logged in fit_calls(
                    state.start_step, settings.iter_max, settings.log_every,
                    model.steps_per_execution):
                # Each call's stream ends with its last step, so that its last execution may
                # run fewer steps than the others (Keras stops a multi-step call when the data
                # ends): boundaries need not be multiples of the steps per call.
                stream = state.task.stream(state.dataset, settings.batch_size, settings.seed,
                                           model.binarized, first, **settings.hypers)
                model.fit(stream.take(steps * epochs), epochs=epochs, steps_per_epoch=steps,
                          callbacks=[saver] + grids + (loggers if logged else []),
                          shuffle=False, verbose=0)
                if saver.failure or saver.interrupted_at is not None or \
                        (state.best and state.best.stopped_at):
                    break
        finally:  # the last grid and the boards, also when a second Ctrl-C ends the run
            for callback in grids + loggers:
                if hasattr(callback, "close"):
                    callback.close()
        train_seconds = time.time() - t0
    age = process_age()
    startup = None
    if saver.first_step_at is not None and age is not None:
        startup = round(saver.first_step_at - (time.time() - age), 2)
    if saver.failure is not None:
        raise saver.failure
    if saver.interrupted_at is not None:
        raise Interrupted(f"stopped at step {saver.interrupted_at} of {settings.iter_max}; "
                          f"checkpoint saved in {state.manager.latest_checkpoint}. Start the "
                          f"same command again to resume.")
    return train_seconds, startup


def fit_calls(start, last, every, per_call):
    """The ``fit`` calls that train from step ``start`` to ``last``: ``(first step, steps per
    epoch, epochs, logged)``.

    An epoch is a log interval: epochs end on the multiples of ``every`` and on ``last``, so that
    a resumed run's points stay on the grid of the run it continues. Checkpoints and sample
    grids, on multiples of ``per_call`` (the steps per execution), fall at the ends of
    executions as long as each call starts on such a multiple; a run resumed between two of them
    therefore first trains up to the next one in a call of its own (fewer than ``per_call``
    steps), which is ``logged`` only if it ends on a log step: Keras starts each call's
    metrics afresh, so its steps count in no other interval's means.
    """
    calls, step = [], start

    def add(steps, epochs=1):
        nonlocal step
        end = step + steps * epochs
        calls.append((step, steps, epochs, end % every == 0 or end == last))
        step = end
    for boundary in (per_call, every):  # up to the next multiple of each (align, then head)
        steps = min(-step % boundary, last - step)
        if steps:
            add(steps)
    if (last - step) // every:  # the whole intervals
        add(every, (last - step) // every)
    if last > step:  # the tail
        add(last - step)
    return calls


def watchers(state):
    """The chief's callbacks besides the checkpoints (the other workers have none): the sample
    grids, which act on steps, and the loggers, which act on log intervals (the validation
    curve, the board, the history and the progress lines)."""
    if not state.chief:
        return [], []
    settings, logs = state.settings, os.path.join(state.folder, "logs")
    grids = callbacks.SampleGrids(os.path.join(state.folder, "samples"), settings.iter_save,
                                  settings.seed, os.path.join(logs, "samples"))
    return [grids], [
        callbacks.Validation(state.task.validation(state.dataset, state.model.binarized),
                             settings.seed),
        *([state.best] if state.best else []),  # after Validation: it reads val_nelbo
        callbacks.StepBoard(logs),
        callbacks.HistoryCSV(state.history, settings.log_every, settings.iter_max),
        *([] if settings.verbose == 0 else [callbacks.Progress(
            settings.iter_max, live=settings.verbose == 1 or (settings.verbose is None
                                                              and sys.stdout.isatty()))])]


def finish(state, timing):
    """The evaluation, the export, the pictures and what the user reads at the end."""
    settings, model = state.settings, state.model
    train_seconds, startup_seconds = timing
    steps = int(model.optimizer.iterations.numpy())
    stopping = early_stopping(state)
    digest = checkpoints.weights_digest(model)
    if startup_seconds is not None:
        log.info("start-up: %.1f s from launch to the end of the first step", startup_seconds)
    log.info("%s: weights sha256 %s", f"step {steps}" if not stopping else
             f"the best weights (step {stopping['early_stopping']['best_step']})", digest)
    start = state.start_step
    results = {"run": settings.run_name(state.dataset), "steps": steps,
               "resumed_from_step": start, "train_seconds": round(train_seconds, 2),
               "train_steps_per_second":
                   round((steps - start) / train_seconds, 2) if steps > start else None,
               "startup_seconds": startup_seconds, "weights_sha256": digest,
               "commit": state.commit, **stopping}
    if not state.chief:
        shutil.rmtree(state.scratch, ignore_errors=True)
        with contextlib.suppress(OSError):  # Empty once every worker has finished.
            os.rmdir(os.path.dirname(state.scratch))
        return results
    results.update(state.task.evaluate(model, state.dataset, model.binarized, settings))
    results["wall_seconds"] = round(time.time() - state.started, 2)
    log.info("%s", evaluate.format_table(results))
    if settings.export:
        export.export(model, os.path.join(state.folder, "savedmodel"), data=state.identity)
    files.write_bytes_atomic(os.path.join(state.folder, "evaluation.json"),
                             json.dumps(results, indent=1).encode())
    written = pictures.write_all(state.folder, results, state.dataset, model,
                                 history=state.history, log_every=settings.log_every)
    pictures.to_tensorboard(os.path.join(state.folder, "logs", "evaluation"), written, results,
                            steps)
    if settings.recipe:  # the paper's number beside the run's
        written += write_card(state.folder)
    where = os.path.abspath(state.folder)
    lines = [f"results in {where}:",
             "  " + ", ".join(["evaluation.json"] + [os.path.basename(p) for p in written])]
    if settings.export:
        lines.append(f"  savedmodel/   bin/sample --model_dir={os.path.join(where, 'savedmodel')}")
    lines.append(f"  logs/         tensorboard --logdir {os.path.join(where, 'logs')}")
    log.info("%s", "\n".join(lines))
    return results


def write_card(folder):
    """``[the path of MODEL_CARD.md]``, or ``[]`` with a warning if it could not be written
    (the run's results are on disk already; ``python -m tfp_vae.cards`` writes it later)."""
    try:
        return [cards.write(folder)]
    except Exception as e:  # noqa: BLE001  (a card is never worth the run's end)
        log.warning("MODEL_CARD.md not written (%s: %s); write it with python -m tfp_vae.cards "
                    "%s", type(e).__name__, e, folder)
        return []


def early_stopping(state):
    """With ``--patience``: the best weights restored into the model (what is evaluated and
    exported), and ``{"early_stopping": {...}}`` for the results; ``{}`` without."""
    if state.best is None:
        return {}
    best = state.best.restore(state.model)
    if best is not None:
        log.info("early stopping: the weights of step %d (val_nelbo %.4f) restored%s", best,
                 state.best.state["val_nelbo"], f"; stopped at step {state.best.stopped_at}"
                 if state.best.stopped_at else "")
    return {"early_stopping": {"patience": state.settings.patience, "best_step": best,
                               "best_val_nelbo": state.best.state["val_nelbo"],
                               "stopped_at": state.best.stopped_at}}


# ------------------------------------------------------------------------------ the model
def make_optimizer(settings, dataset):
    """The optimiser of a run: Keras' Adam (the reference's) with ``--adam_epsilon``, its
    learning rate following ``--lr_schedule`` (:mod:`tfp_vae.schedules`; epochs are passes over
    ``dataset``'s training images)."""
    per_epoch = sources.steps_per_epoch(len(dataset.train_images), settings.batch_size)
    return keras.optimizers.Adam(schedules.learning_rate(settings.lr_schedule, settings.lr,
                                                         per_epoch),
                                 epsilon=settings.adam_epsilon)


def build_model(settings, strategy, dataset):
    """The model of ``settings`` for ``dataset``, compiled, under ``strategy``."""
    with strategy.scope():
        model = settings.kind.model_class()(seed=settings.seed,
                                            **settings.model_kwargs(dataset))
        # steps_per_execution: set in build() (resolve_steps_per_execution).
        model.compile(optimizer=make_optimizer(settings, dataset),
                      jit_compile=resolve_jit(settings, strategy))
        model.optimizer.build(model.trainable_variables)
    return model


def check_memory(settings, strategy, dataset):
    """Refuses a model that cannot fit in memory (a huge ``--z``, ``--z2`` or ``--k``) before
    building it: :func:`tfp_vae.memory.training_bytes` on every replica against the memory
    available. Small settings (the latent's width times ``k`` up to 4096 and up to 10,000
    image-samples a step: a few hundred MiB at most) are not estimated, which would cost
    start-up time."""
    kind, kwargs = settings.kind, settings.model_kwargs(dataset)
    components = kwargs.get(kind.components, 1) if kind.components else 1
    samples = kwargs.get("train_samples", 1)
    classes = kwargs.get("num_classes", 0)
    if kind.latent_width(kwargs) * components <= 4096 and \
            settings.batch_size * samples <= 10_000 and classes <= 10:
        return
    need = strategy.num_replicas_in_sync * memory.training_bytes(kind, settings.batch_size,
                                                                 **kwargs)
    sizes = tuple("z" if name == "z_dim" else name for name in kind.sizes()) + \
        (("train_samples",) if "train_samples" in kwargs else ())
    memory.require(need, f"--model={settings.model} "
                   + " ".join(f"--{flag}={getattr(settings, flag)}" for flag in sizes)
                   + f" (batch {settings.batch_size}" + (f", {classes:,} classes)" if classes
                                                         else ")"),
                   "choose a smaller " + " or ".join(f"--{flag}" for flag in sizes))


def resolve_jit(settings, strategy):
    """``--jit_compile=auto``: XLA on a single replica for the models it speeds up (every model
    with the reference's MLPs; see docs/performance.md) in runs of at least ``XLA_MIN_STEPS``
    steps, never under MirroredStrategy, where it fails on logical CPUs."""
    if settings.jit_compile == "true":
        if strategy.num_replicas_in_sync > 1:
            raise ConfigError("--jit_compile=true fails under MirroredStrategy with more than one "
                              "replica on CPU; use --jit_compile=auto or false.")
        return True
    if settings.jit_compile == "auto":
        # XLA slows the convolutional networks on CPU (VAE: 49.4 -> 85.6 ms per step,
        # benchmarks/settings.py --settings=50:0:default:conv,50:1:default:conv), and speeds
        # or matches the dense ones (ms per step, 1,500 - 500 steps of bin/train, XLA / not:
        # the VampPrior paper's gated VampPrior 19 / 37, its gated VAE 8.4 / 8.6, the IWAE
        # paper's tanh networks trained on IWAE-50 15.4 / 19.8 and IWAE-5 4.5 / 5.4; on the
        # ELBO 3.3 / 1.4, then 1.8 / 3.4, this VM's two speeds). Its compilation (about 2 s
        # for the VAE) pays back only over many steps, so short runs skip it; the choice
        # depends on --iter_max, never on the step resumed from, so a resumed run computes
        # exactly as the uninterrupted one.
        return (strategy.num_replicas_in_sync == 1 and settings.kind.xla
                and settings.arch != "conv" and settings.iter_max >= XLA_MIN_STEPS)
    return False


# --jit_compile=auto compiles with XLA only runs of at least this many steps (see resolve_jit).
XLA_MIN_STEPS = 2000


# Candidates for --steps_per_execution when it is not given, largest first.
AUTO_STEPS_PER_EXECUTION = (50, 25, 20, 10, 5, 4, 2, 1)


def resolve_steps_per_execution(settings):
    """Training steps per call into the compiled function.

    Several steps per call save the Python and callback overhead of each step (measured: the VAE
    step from 10.5 to 6.3 ms with 50). Checkpoints and sample grids happen between calls, so the
    number must divide ``iter_save`` and ``log_every``; unset, it is the largest of
    ``AUTO_STEPS_PER_EXECUTION`` that does. ``iter_max`` and the step a run resumes from need not
    be multiples of it (see :func:`fit_calls`).
    """
    needs = (settings.iter_save, settings.log_every)
    if settings.strategy != "default":
        # Keras 3.15's multi-step loop fails on our distributed streams under Mirrored and
        # MultiWorkerMirrored strategies ("You must feed a value for placeholder tensor
        # 'while/cond/Placeholder'"), so distributed runs take one step per call.
        if settings.steps_per_execution not in (None, 1):
            raise ConfigError(f"--strategy={settings.strategy} runs one step per call (Keras' "
                              f"multi-step loop fails under tf.distribute strategies here); leave "
                              f"--steps_per_execution unset.")
        return 1
    if settings.steps_per_execution is None:
        return next(d for d in AUTO_STEPS_PER_EXECUTION if all(n % d == 0 for n in needs))
    return settings.steps_per_execution


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


def data_identity(settings, dataset):
    """What names the data of a run, recorded in ``settings.json`` and the SavedModel: resuming
    on other data is refused, and ``bin/evaluate`` finds the test set by it."""
    data_dir = settings.data_dir and os.path.abspath(os.path.expanduser(settings.data_dir))
    identity = {"data_name": dataset.name, "data_source": dataset.source,
                "data_sha256": dataset.fingerprint, "data_spec": settings.dataset,
                "data_dir_resolved": data_dir}
    if settings.pixel_max is not None:  # read on another scale: bin/evaluate reads it so too
        identity["data_pixel_max"] = settings.pixel_max
    return identity
