"""FusedAdam makes the updates of keras.optimizers.Adam, on one device and on two replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import conftest
from tfp_vae import models, train
from tfp_vae.optimizers import FusedAdam


def _gradients(variables, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [[tf.constant(rng.normal(0, 1, v.shape).astype(np.float32)) for v in variables]
            for _ in range(steps)]


def _run(optimizer, steps=5):
    keras.utils.set_random_seed(0)
    variables = [keras.Variable(np.full((3, 4), 0.5, np.float32)),
                 keras.Variable(np.linspace(-1, 1, 4).astype(np.float32))]
    for grads in _gradients(variables, steps):
        optimizer.apply(grads, variables)
    return [v.numpy() for v in variables], [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("kwargs", [{}, {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3},
                                    {"clipnorm": 0.1}, {"weight_decay": 0.01}])
def test_fused_adam_makes_kerass_adam_updates(kwargs):
    fused_weights, fused_state = _run(FusedAdam(1e-2, **kwargs))
    keras_weights, keras_state = _run(keras.optimizers.Adam(1e-2, **kwargs))
    start = np.full((3, 4), 0.5, np.float32)
    assert not np.allclose(fused_weights[0], start)  # the steps did move the weights
    for a, b in zip(fused_weights + fused_state, keras_weights + keras_state):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # the same formulas, float32 rounding


def test_fused_adam_follows_a_learning_rate_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=1, decay_rate=0.5)
    fused, _ = _run(FusedAdam(schedule))
    reference, _ = _run(keras.optimizers.Adam(schedule))
    constant, _ = _run(FusedAdam(1e-2))
    np.testing.assert_allclose(fused[0], reference[0], rtol=1e-6)
    assert not np.allclose(fused[0], constant[0])


def test_fused_adam_on_two_replicas_makes_kerass_adam_step():
    """One fit step of the same model on 2 replicas with FusedAdam and with Keras' Adam (the same
    seeds, so the same gradients): the same weights and moments, on both replicas' copies."""
    rng = np.random.default_rng(1)
    x = (rng.random((16, 784)) < 0.3).astype(np.float32)
    weights = models.VAE(z_dim=3).get_weights()
    strategy = conftest.two_cpu_strategy()

    def one_step(make_optimizer):
        with strategy.scope():
            model = models.VAE(z_dim=3)
            model.set_weights(weights)
            model.compile(optimizer=make_optimizer(1e-3))
        model.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=1, verbose=0)
        replicas = [[c.numpy() for c in strategy.experimental_local_results(v.value)]
                    for v in model.trainable_variables + model.optimizer.variables]
        return replicas

    fused = one_step(FusedAdam)
    reference = one_step(keras.optimizers.Adam)
    assert isinstance(train.make_optimizer(1e-3), FusedAdam)  # bin/train's choice without XLA
    assert not isinstance(train.make_optimizer(1e-3, jit_compile=True), FusedAdam)
    for copies, reference_copies in zip(fused, reference):
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0], copies[1])  # the replicas stay in sync
        np.testing.assert_allclose(copies[0], reference_copies[0], rtol=1e-5, atol=1e-7)
    for new, old in zip(fused, weights):
        assert np.abs(new[0] - old).max() > 5e-4  # every weight matrix moved (by about lr)


def test_fused_adam_restores_a_keras_adam_checkpoint(tmp_path):
    variables = [tf.Variable(np.ones((2, 2), np.float32))]
    adam = keras.optimizers.Adam(1e-2)
    adam.apply([tf.ones((2, 2))], variables)
    tf.train.Checkpoint(optimizer=adam).write(str(tmp_path / "ckpt"))
    fused = FusedAdam(1e-2)
    fused.build(variables)
    tf.train.Checkpoint(optimizer=fused).read(str(tmp_path / "ckpt")).assert_consumed()
    for a, b in zip(adam.variables, fused.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def _op_types(optimizer):
    variables = [keras.Variable(np.ones((2, 2), np.float32))]
    optimizer.build(variables)
    apply = tf.function(lambda g: optimizer.apply([g], variables))
    graph = apply.get_concrete_function(tf.TensorSpec([2, 2], tf.float32)).graph
    types = {op.type for op in graph.get_operations()}
    for function in graph.as_graph_def().library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_fused_adam_uses_the_fused_kernel_and_falls_back_for_amsgrad():
    assert "ResourceApplyAdam" in _op_types(FusedAdam(1e-2))
    assert "ResourceApplyAdam" not in _op_types(FusedAdam(1e-2, amsgrad=True))
    assert "ResourceApplyAdam" not in _op_types(keras.optimizers.Adam(1e-2))


@pytest.mark.parametrize("model,arch,iter_max,expected", [
    ("vae", "mlp", 20000, True), ("ssvae", "mlp", 30000, True), ("gmvae", "mlp", 2000, True),
    ("vae", "mlp", 1999, False), ("fsvae", "mlp", 100, False), ("vae", "conv", 20000, False)])
def test_auto_xla_for_long_runs_of_the_reference_networks_only(model, arch, iter_max, expected):
    """--jit_compile=auto: XLA on one device for the MLP models in runs of at least
    XLA_MIN_STEPS steps (by --iter_max, so a resumed run keeps the choice); never for conv."""
    config = train.TrainConfig(model=model, arch=arch, iter_max=iter_max,
                               iter_save=min(iter_max, 1000), log_every=min(iter_max, 1000))
    assert train.resolve_jit(config, tf.distribute.get_strategy()) is expected
    forced = train.TrainConfig(model=model, arch=arch, iter_max=iter_max, jit_compile="true",
                               iter_save=min(iter_max, 1000), log_every=min(iter_max, 1000))
    assert train.resolve_jit(forced, tf.distribute.get_strategy()) is True
