"""Every use of a private Keras or TensorFlow API, in one place, each with the versions it was
checked against and a test (``tests/test_compat.py``) that fails when it stops working.

Checked against Keras 3.15.1 and TensorFlow 2.21.0.
"""

import tensorflow as tf


def build_without_data(model):
    """Builds what is left of ``model`` for ``fit`` without looking at data; returns whether it
    did (else the caller runs Keras' own ``_maybe_symbolic_build``).

    Keras 3.15 builds a model for ``fit`` under a distribution strategy by reducing the first
    batch across replicas with MEAN, which fails when a batch splits unevenly (97 over two
    replicas is 49 + 48). Our models create their variables in ``__init__`` and have no compiled
    loss or metrics, so nothing needs data: build only the optimizer, as Keras does. Private:
    ``Model._compile_loss``, ``_compile_metrics``, ``_symbolic_build`` (keras/src/trainers/
    trainer.py).
    """
    if model._compile_loss is not None or model._compile_metrics is not None:
        return False
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=())
    return True


def multi_worker(strategy):
    """Whether ``strategy`` spans several workers, by Keras' own test
    (keras/src/backend/tensorflow/trainer.py; private: ``_in_multi_worker_mode``)."""
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def reducible_step_outputs(results):
    """A train step's outputs in the shape Keras can reduce across workers: Keras 3.15 reduces
    them with ``reduce("MEAN", axis=0)`` under a multi-worker strategy, which fails on scalars
    ("Invalid reduction dimension 0"); a [1] vector reduces to a scalar."""
    if multi_worker(tf.distribute.get_strategy()):
        return {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results


def configure_coordination_service(cluster, timeout_ms):
    """Gives TensorFlow's coordination service (which MultiWorkerMirroredStrategy starts) a
    registration timeout. There is no public API for it: this sets, through TensorFlow's eager
    context, the configuration the strategy would otherwise make itself (the same service,
    leader and jobs), plus the timeout and a registration barrier on the leader too. Private:
    ``tensorflow.python.eager.context`` and the coordination config proto."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    leader = "chief" if cluster.get("chief") else "worker"
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster[job]))
            for job in ("chief", "worker") if cluster.get(job)]
    ctx = context.context()
    ctx.configure_coordination_service(
        service_type="standalone", service_leader=f"/job:{leader}/replica:0/task:0",
        coordinated_jobs=jobs, cluster_register_timeout_in_ms=int(timeout_ms))
    ctx.coordination_service.cluster_register_with_barrier = True


def silenced_deprecation():
    """A context that silences TensorFlow's deprecation warnings (the preemption handler reads
    its own deprecated step counter; nothing a user can act on). Private:
    ``tensorflow.python.util.deprecation.silence``."""
    from tensorflow.python.util import deprecation
    return deprecation.silence()
