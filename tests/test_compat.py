"""Each private Keras/TensorFlow call of tfp_vae.compat still exists and still does its job."""

import numpy as np
import tensorflow as tf

import conftest
from tfp_vae import compat, models


def test_a_model_builds_for_fit_without_data_under_a_strategy():
    """Keras' own symbolic build reduces the first batch across replicas and fails on 97 images
    over two; ours builds the optimizer only, and fit then runs on such a batch."""
    import keras
    strategy = conftest.two_cpu_strategy()
    with strategy.scope():
        model = models.VAE(z_dim=2, image_shape=(4, 4, 1))
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert model._compile_loss is None and model._compile_metrics is None
    assert compat.build_without_data(model) and model.optimizer.built
    x = np.random.default_rng(0).integers(0, 2, (97, 16)).astype(np.float32)
    model.fit(tf.data.Dataset.from_tensors(x).repeat(), steps_per_epoch=1, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 1


def test_multi_worker_mode_is_told_by_the_strategy():
    from tensorflow.python.distribute import collective_all_reduce_strategy as collective
    assert hasattr(collective.CollectiveAllReduceExtended, "_in_multi_worker_mode")
    assert not compat.multi_worker(tf.distribute.get_strategy())
    assert not compat.multi_worker(conftest.two_cpu_strategy())
    out = compat.reducible_step_outputs({"nelbo": tf.constant(1.0)})
    assert out["nelbo"].shape == ()  # untouched on one worker


def test_the_coordination_service_can_be_configured():
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context
    assert hasattr(coordination_config_pb2, "CoordinatedJob")
    assert callable(getattr(context.context(), "configure_coordination_service", None))


def test_deprecation_warnings_can_be_silenced():
    with compat.silenced_deprecation():
        pass
