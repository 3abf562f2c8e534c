"""Shared test set-up: two logical CPUs (for MirroredStrategy tests) and small helpers."""

import functools
import os
import pathlib
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Logical devices must be configured before TensorFlow initialises its runtime.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(__file__).resolve().parent / "data"


@functools.lru_cache(maxsize=None)
def two_cpu_strategy():
    """MirroredStrategy over the two logical CPUs, one for the whole test process: a second
    MirroredStrategy over the same devices in one process can abort a step with "Shape mismatch
    in the collective instance" (its collective keys collide with the first one's)."""
    from tfp_vae import distribute, train
    return distribute.make_strategy(train.Settings(strategy="mirrored", cpu_replicas=2))


def run_tool(*args, timeout=600, cwd=None):
    """Runs ``bin/<tool> args...`` in a fresh Python process; returns the CompletedProcess."""
    cmd = [sys.executable, str(ROOT / "bin" / args[0]), *map(str, args[1:])]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="session")
def mnist():
    from tfp_vae import data
    return data.load_mnist()


def free_ports(n):
    """``n`` TCP ports of 127.0.0.1 that were free a moment ago (for multi-worker clusters)."""
    import socket
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# ------------------------------------------------------------- small runs the tests share
QUIET = dict(eval_repeats=1, iwae_samples=(1,), full_test=False, export=False, verbose=0)
RUN = "model=vae_z=10_run=0000"  # the run name of Settings(model="vae") on MNIST
FAST_EVAL = ["--eval_repeats=2", "--iwae_samples=1", "--nofull_test", "--noexport"]


def vae_settings(out, **changes):
    """The settings of a 10-step VAE run into ``out``, with ``changes``."""
    from tfp_vae import train
    return train.Settings(**{**dict(model="vae", iter_max=10, iter_save=5, log_every=5,
                                    out_dir=str(out), **QUIET), **changes})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A VAE run of 10 steps with checkpoints at 5 and 10 and history rows every 5 steps."""
    from tfp_vae import train
    out = tmp_path_factory.mktemp("finished")
    train.run(vae_settings(out))
    return out


def copy_run(finished, tmp_path):
    """A copy of the ``finished`` runs folder: ``(out_dir, run folder)``."""
    import shutil
    shutil.copytree(finished, tmp_path / "runs")
    return tmp_path / "runs", tmp_path / "runs" / RUN


def printed_digest(stdout):
    """The final weights digest that bin/train prints."""
    import re
    found = re.findall(r"weights sha256 ([0-9a-f]{64})", stdout)
    assert found, stdout[-2000:]
    return found[-1]


def wait_for_checkpoint(folder, proc, newer_than=0, timeout=300):
    """Waits until the run publishes a checkpoint of a step > newer_than; returns that step."""
    import time
    state = os.path.join(folder, "checkpoint")
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        latest = tf.train.latest_checkpoint(folder) if os.path.exists(state) else None
        if latest and int(latest.rsplit("-", 1)[1]) > newer_than:
            return int(latest.rsplit("-", 1)[1])
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint after step {newer_than} within {timeout} s")


def toy_images(n=64, dim=16, seed=0):
    """``n`` binary images of ``dim`` pixels: three prototypes with 10 % of pixels flipped."""
    import numpy as np
    rng = np.random.RandomState(seed)
    prototypes = rng.binomial(1, 0.4, (3, dim))
    return np.abs(prototypes[rng.randint(0, 3, n)] - rng.binomial(1, 0.1, (n, dim))).astype(
        np.float32)


def fit_steps(model, x, steps=5):
    """Fits ``model`` on the one batch ``x`` for ``steps`` SGD steps; returns its weights."""
    import keras
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    model.fit(tf.data.Dataset.from_tensors(x).repeat(), epochs=1, steps_per_epoch=steps,
              verbose=0)
    return [w.numpy() for w in model.trainable_variables]
