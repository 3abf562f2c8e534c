"""Distribution strategies of training runs: one device, mirrored devices, several workers.

``make_strategy`` turns ``--strategy`` (``default``, ``mirrored``, ``multiworker``) and its device
settings into a ``tf.distribute`` strategy; ``multiworker`` reads the standard ``TF_CONFIG``
environment variable, which :func:`cluster_from_tf_config` checks first so that a wrong cluster
description gets a message rather than a hang.
"""

import json
import os

import tensorflow as tf

from tfp_vae.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multiworker")


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


def worker_scratch(run_dir, strategy):
    """Where a non-chief worker writes what the chief writes for real (its checkpoints and
    logs must be written too: saving may need every worker, but only the chief's are kept)."""
    resolver = strategy.cluster_resolver
    return os.path.join(run_dir, "workers", f"{resolver.task_type}-{resolver.task_id}")
