"""Distribution strategies of training runs: one device, mirrored devices, several workers.

``make_strategy`` turns ``--strategy`` (``default``, ``mirrored``, ``multiworker``) and its device
settings into a ``tf.distribute`` strategy; ``multiworker`` reads the standard ``TF_CONFIG``
environment variable, which :func:`cluster_from_tf_config` checks first so that a wrong cluster
description gets a message rather than a hang.
"""

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

import tensorflow as tf

from tfp_vae import compat
from tfp_vae.settings import MAX_PEER_TIMEOUT
from tfp_vae.errors import ConfigError, Interrupted

log = logging.getLogger(__name__)


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
    this machine) or ``multiworker`` (MultiWorkerMirroredStrategy over the hosts of TF_CONFIG,
    once every host has come: :func:`multi_worker_strategy`)."""
    if config.strategy != "mirrored" and (config.cpu_replicas or config.devices):
        raise ConfigError("--cpu_replicas and --devices need --strategy=mirrored.")
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "multiworker":
        return multi_worker_strategy(config.peer_timeout)
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
      ``(task_type, task_index, own, addresses)``: this task, its ``host:port``, and that of
      every worker (the chief's first), this task's among them.
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
    for address in workers:
        if host_port(address) is None:
            raise ConfigError(f"TF_CONFIG address {address!r} is not host:port with a port in "
                              f"1..65535 (IPv6 as [::1]:12345), e.g. {_TF_CONFIG_EXAMPLE}.")
    repeated = sorted({a for a in workers if workers.count(a) > 1})
    if repeated:
        raise ConfigError(f"TF_CONFIG names {', '.join(repeated)} more than once; every worker "
                          f"needs an address of its own.")
    return task_type, index, hosts[index], workers


def host_port(address):
    """``(host, port)`` of ``host:port`` or ``[ipv6]:port``; None if it is neither."""
    if not isinstance(address, str):
        return None
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        return None
    return host, int(port)


def multi_worker_strategy(timeout):
    """MultiWorkerMirroredStrategy over the hosts of TF_CONFIG, once they have all come.

    TensorFlow's own start waits for every worker inside a C++ call that never times out and
    that neither Ctrl-C nor SIGTERM can stop (its preemption notifier takes SIGTERM). So every
    worker first waits for its peers here (:func:`wait_for_peers`: interruptible, with a
    timeout that names the missing addresses), and TensorFlow's registration is given the same
    timeout as a backstop (a peer that dies in between).
    """
    task_type, index, own, workers = cluster_from_tf_config()
    wait_for_peers(own, [w for w in workers if w != own], timeout)
    _configure_registration(timeout)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
            tf.errors.AbortedError) as e:
        missing = [w for w in workers if w != own and not _answers(w)]
        raise ConfigError(
            f"{task_type} {index} of {len(workers)} could not join the cluster within "
            f"--peer_timeout={timeout:g} s ({str(e).strip().splitlines()[0][:120]}); "
            + (f"no worker answers at {', '.join(missing)}. " if missing else "")
            + "Start the same command on every host of TF_CONFIG.") from None


def _configure_registration(timeout):
    """TensorFlow's registration timeout for the cluster
    (:func:`compat.configure_coordination_service`)."""
    cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]
    compat.configure_coordination_service(cluster, min(timeout, MAX_PEER_TIMEOUT) * 1000)


def _answers(address, timeout=1.0):
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection(host_port(address), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_peers(own, peers, timeout, poll=0.25):
    """Waits until something answers at every address of ``peers``, listening meanwhile at this
    worker's own address ``own`` so that they see it too (TensorFlow's server takes the port
    over afterwards).

    Written by hand because TensorFlow's own wait cannot be interrupted and has no timeout (see
    :func:`multi_worker_strategy`). Ctrl-C and SIGTERM stop the wait at once.

    Raises:
      ConfigError: after ``timeout`` seconds, naming the addresses where no worker answered; or
        when this worker's port is taken.
      Interrupted: Ctrl-C or SIGTERM.
    """
    port = host_port(own)[1]
    try:  # every interface, IPv4 and IPv6 where the system has both
        if socket.has_dualstack_ipv6():
            listener = socket.create_server(("", port), family=socket.AF_INET6,
                                            dualstack_ipv6=True, reuse_port=False, backlog=64)
        else:
            listener = socket.create_server(("", port), backlog=64)
    except OSError as e:
        raise ConfigError(f"this worker's TF_CONFIG address {own} cannot be used ({e.strerror}); "
                          f"is a worker of this cluster still running on this host?") from None
    listener.setblocking(False)

    def stop(signum, frame):
        raise Interrupted(f"{signal.Signals(signum).name} while waiting for the other workers; "
                          f"nothing was trained.")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    missing, deadline, told = list(peers), time.monotonic() + timeout, False
    try:
        while True:
            with contextlib.suppress(BlockingIOError):
                while True:  # the peers' probes
                    listener.accept()[0].close()
            missing = [address for address in missing if not _answers(address, poll)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise ConfigError(f"no worker answered at {', '.join(missing)} within "
                                  f"--peer_timeout={timeout:g} s; start the same command with "
                                  f"its TF_CONFIG on every host of the cluster (or wait longer "
                                  f"with a larger --peer_timeout).")
            if not told:
                log.info("waiting for %d worker(s) at %s (at most %g s)", len(missing),
                         ", ".join(missing), timeout)
                told = True
            time.sleep(poll)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        listener.close()


@contextlib.contextmanager
def cluster_stop_requests(strategy):
    """A stop that the whole cluster agrees on: SIGTERM (a preemption) or Ctrl-C on any one
    worker makes every worker stop at the same step, once it is checkpointed.

    TensorFlow's ``PreemptionCheckpointHandler`` spreads the signal through the coordination
    service and chooses the step; here it only decides *when*: its ``save_fn`` marks the step
    and the poll yielded (called after every step on every worker, by
    :class:`tfp_vae.guard.StepCheckpoint`) reports it, so that the run's own checkpoint manager
    saves that step on every worker and training stops as after Ctrl-C. The handler's own
    checkpoint (its step counter only) lives in a temporary folder: every worker starts from the
    same restored step, so their counters agree.
    """
    scratch = tempfile.mkdtemp(prefix="tfp_vae-preemption-")
    agreed = []
    config = tf.distribute.experimental.TerminationConfig(
        exit_fn=lambda: None, save_fn=lambda *args, **kwargs: agreed.append(True))
    handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, tf.train.Checkpoint(), os.path.join(scratch, "state"),
        termination_config=config)
    on_preemption = signal.getsignal(signal.SIGTERM)  # the handler's own (it sets one)
    received = []

    def forward(signum, frame):
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)
        # Printed, not logged: a signal handler must not take the locks logging holds.
        print(f"\n{signal.Signals(signum).name}: every worker saves a checkpoint at the same "
              f"step, then stops (Ctrl-C again stops this worker at once).", file=sys.stderr,
              flush=True)
        if callable(on_preemption):
            on_preemption(signal.SIGTERM, frame)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}

    def poll():
        # The handler reads its own deprecated step counter when it saves; silence the warning
        # about it (TensorFlow's internal use, nothing the user can act on).
        with compat.silenced_deprecation():
            handler.save_checkpoint_if_preempted()
        return bool(agreed)

    try:
        yield poll
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        handler = None  # drop the handler (and its signal hooks) now
        shutil.rmtree(scratch, ignore_errors=True)


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
