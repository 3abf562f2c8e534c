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
