"""Networks: the built-in MLPs (plain and gated), and your own networks as a model's encoder
and decoder (tfp_vae.networks.UserNetwork) with the model's Keras conventions around them: image
layouts, uint8 input, the loss metric and Keras' callbacks, export, sampling without a seed."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from conftest import QUIET
from tfp_vae import models, networks, registry, train

tfd = tfp.distributions
Z = 3


def _images(n=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)


def _conv_pair(z=Z):
    encoder = keras.Sequential([keras.layers.Conv2D(4, 3, strides=2, padding="same",
                                                    activation="relu"),
                                keras.layers.Flatten(), keras.layers.Dense(2 * z)])
    decoder = keras.Sequential([keras.layers.Dense(4 * 4 * 4, activation="relu"),
                                keras.layers.Reshape((4, 4, 4)),
                                keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same")])
    return encoder, decoder


def _vae(**kwargs):
    encoder, decoder = _conv_pair()
    model = models.VAE(encoder=encoder, decoder=decoder, z_dim=Z, image_shape=(8, 8, 1), **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def test_a_conv_vae_of_sequentials_trains_on_uint8_images_with_keras_callbacks(tmp_path):
    model = _vae()
    best = tmp_path / "best.weights.h5"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(_images(), epochs=3, batch_size=16, verbose=0,
                            validation_data=(_images(32, seed=1),),
                            callbacks=[keras.callbacks.EarlyStopping(),
                                       keras.callbacks.ModelCheckpoint(
                                           best, save_best_only=True, save_weights_only=True),
                                       keras.callbacks.ReduceLROnPlateau()])
    assert {"loss", "val_loss", "nelbo", "val_nelbo"} <= set(history.history)
    # loss is the training objective: the negative ELBO for the VAE
    np.testing.assert_allclose(history.history["loss"], history.history["nelbo"], rtol=1e-5)
    assert best.is_file()
    assert not [w for w in caught if "not available" in str(w.message)]  # callbacks found val_loss
    lines = []
    model.summary(print_fn=lines.append)
    assert "your Sequential" in "\n".join(lines)


def test_own_networks_survive_the_keras_format(tmp_path):
    model = _vae()
    model.fit(_images(), epochs=1, batch_size=16, verbose=0)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    x = _images(4)
    np.testing.assert_array_equal(again.embed(x), model.embed(x))


def test_the_iwae_feeds_a_sequential_decoder_its_sample_axis():
    model = _vae()
    x = model.check_inputs(_images(5))
    bound = model.negative_iwae(x, 7, seed=[1, 2])
    assert bound.value.shape == (5,) and np.isfinite(bound.value).all()
    chunked = model.negative_iwae(x, 7, seed=[1, 2], max_rows=10).value  # in pieces of 2 x 5
    assert chunked.shape == (5,) and np.isfinite(chunked).all()


class _FullCovariance(keras.layers.Layer):
    """An encoder returning a distribution TFP has no KL for against N(0, I)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2 * Z)

    def call(self, x):
        h = self.dense(keras.ops.reshape(x, (-1, 64)))
        return tfd.MultivariateNormalDiag(h[:, :Z], tf.nn.softplus(h[:, Z:]) + 1e-3)


@pytest.mark.parametrize("cls", [models.VAE, models.GMVAE])
def test_an_encoder_may_return_any_tfp_distribution(cls):
    extra = {"k": 4} if cls is models.GMVAE else {}
    model = cls(encoder=_FullCovariance(), z_dim=Z, image_shape=(8, 8, 1), **extra)
    model.compile(optimizer="adam")
    model.fit(_images(), epochs=1, batch_size=16, verbose=0)
    x = model.check_inputs(_images(4))
    assert np.isfinite(model.negative_elbo(x, seed=[0, 1]).value).all()
    assert np.isfinite(model.negative_iwae(x, 5, seed=[0, 1]).value).all()


class _LogitsAsDistribution(keras.layers.Layer):
    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def call(self, z):
        return tfd.Independent(tfd.Bernoulli(logits=self.net(z)), reinterpreted_batch_ndims=3)


def test_a_decoder_may_return_a_distribution_over_the_image():
    encoder, decoder = _conv_pair()
    tensor = models.VAE(encoder=encoder, decoder=decoder, z_dim=Z, image_shape=(8, 8, 1))
    wrapped = models.VAE(encoder=encoder, decoder=_LogitsAsDistribution(decoder), z_dim=Z,
                         image_shape=(8, 8, 1))
    x = tensor.check_inputs(_images(4))
    np.testing.assert_allclose(wrapped.negative_iwae(x, 3, seed=[5, 6]).value,
                               tensor.negative_iwae(x, 3, seed=[5, 6]).value, rtol=1e-5)


def test_conditional_models_take_networks_of_images_and_one_hot_labels():
    def pair():
        image, label = keras.Input((8, 8, 1)), keras.Input((3,))
        h = keras.layers.Concatenate()([keras.layers.Flatten()(image), label])
        encoder = keras.Model([image, label], keras.layers.Dense(2 * Z)(h))
        z, label = keras.Input((Z,)), keras.Input((3,))
        h = keras.layers.Dense(64)(keras.layers.Concatenate()([z, label]))
        decoder = keras.Model([z, label], keras.layers.Reshape((8, 8, 1))(h))
        return encoder, decoder
    labels = np.arange(64) % 3
    for cls in (models.FSVAE, models.SSVAE):
        encoder, decoder = pair()
        model = cls(encoder=encoder, decoder=decoder, z_dim=Z, image_shape=(8, 8, 1),
                    num_classes=3, likelihood="bernoulli")
        model.compile(optimizer="adam")
        x = model.check_inputs(_images(6))
        y = labels[:6]
        if cls is models.FSVAE:
            model.fit(_images(), labels, epochs=1, batch_size=16, verbose=0)
            value = model.negative_iwae(x, 4, y, seed=[1, 1]).value
        else:  # the label summed out: the networks see (labels, batch) axes
            value = model.negative_elbo(x, seed=[1, 1]).value
        assert value.shape == (6,) and np.isfinite(value).all()
        assert model.sample(5)["x"].shape == (5, 64)


def test_images_in_any_layout_give_the_same_bound():
    model = models.VAE(z_dim=2, image_shape=(8, 8, 1))
    images = _images(4)
    floats = images.astype(np.float32) / 255
    values = [model.embed(x) for x in (images, floats, floats.reshape(4, 8, 8),
                                       floats.reshape(4, 64))]
    for value in values[1:]:
        np.testing.assert_allclose(value, values[0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 8, 8, 1\) or "
                                         r"flattened \(batch, 64\), got \(4, 9, 8\)"):
        model.embed(np.zeros((4, 9, 8), np.float32))
    with pytest.raises(TypeError, match="got dtype int32"):
        model.embed(np.zeros((4, 64), np.int32))


def test_uint8_images_are_binarised_in_the_training_step_only_for_bernoulli_models():
    for likelihood, binary in (("bernoulli", True), ("gaussian", False)):
        model = models.VAE(z_dim=2, image_shape=(8, 8, 1), likelihood=likelihood)
        x = model.check_inputs(_images(4), binarize_seed=tf.constant([1, 2]))
        assert set(np.unique(x.numpy())) <= {0.0, 1.0} if binary else len(np.unique(x)) > 2
    np.testing.assert_array_equal(model.check_inputs(_images(4)),
                                  _images(4).reshape(4, 64).astype(np.float32) / np.float32(255))


def test_sampling_without_a_seed_draws_anew_and_with_one_repeats():
    model = models.VAE(z_dim=2, image_shape=(8, 8, 1))
    first, second = model.sample(50)["x"].numpy(), model.sample(50)["x"].numpy()
    assert (first != second).any()
    np.testing.assert_array_equal(model.sample(50, seed=3)["x"], model.sample(50, seed=3)["x"])


def test_interpolation_runs_from_one_reconstruction_to_the_other():
    model = models.VAE(z_dim=2, image_shape=(8, 8, 1))
    a, b = _images(3), _images(3, seed=5)
    path = model.interpolate(a, b, steps=4).numpy()
    assert path.shape == (4, 3, 64)
    np.testing.assert_allclose(path[0], model.reconstruct(a), rtol=1e-5)
    np.testing.assert_allclose(path[-1], model.reconstruct(b), rtol=1e-5)


def test_keras_export_writes_the_full_savedmodel(tmp_path):
    from tfp_vae import saved
    model = _vae()
    model.export(tmp_path / "m")
    loaded = saved.SavedVAE(str(tmp_path / "m"))
    assert {"sample", "encode", "decode", "negative_elbo", "negative_iwae"} <= \
        set(loaded.metadata["signatures"])
    x = model.check_inputs(_images(3))
    np.testing.assert_allclose(loaded.embed(x), model.embed(x), rtol=1e-5, atol=1e-6)


def test_the_dense_networks_are_the_ones_the_flags_and_kinds_name():
    """The TF-free registry names the dense architectures (for --arch and Kind.archs) without
    importing the networks; both lists must be the same."""
    assert tuple(networks.DENSE_ARCHS) == registry.DENSE_ARCHS
    assert set(registry.ARCHS) == set(networks.DENSE_ARCHS) | {"conv"}


def test_gated_layers_multiply_by_a_sigmoid_gate_and_split_products_agree():
    """Dauphin et al. (2017): h' = (W h + b) * sigmoid(V h + c) on every hidden layer, a plain
    linear output; the SSVAE's shared-features product gives the same numbers."""
    mlp = networks.MLP(6, (5, 4), 3, gated=True)
    mlp.build()
    x = tf.random.stateless_normal([7, 6], seed=[1, 2])
    h = x
    for i in range(2):
        dense, gate = mlp.dense[i], mlp.gates[i]
        h = (h @ dense.kernel + dense.bias) * tf.sigmoid(h @ gate.kernel + gate.bias)
    expected = h @ mlp.dense[2].kernel + mlp.dense[2].bias
    np.testing.assert_allclose(mlp(x), expected, rtol=1e-5, atol=1e-6)
    y = tf.one_hot([0, 1, 2], 2)[:2]  # (2, 2) labels against shared features (7, 4)
    features = x[:, :4]
    split = mlp.call_concatenated([features, y[:, None, :]])
    joined = mlp(tf.concat([tf.broadcast_to(features, [2, 7, 4]),
                            tf.broadcast_to(y[:, None, :], [2, 7, 2])], -1))
    np.testing.assert_allclose(split, joined, rtol=1e-5, atol=1e-6)


def test_a_gated_vae_trains_and_exports_a_savedmodel_that_samples(tmp_path):
    result = train.run(train.Settings(model="vae", arch="gated", iter_max=4, iter_save=4,
                                      log_every=2, out_dir=str(tmp_path),
                                      **{**QUIET, "export": True}))
    run_dir = tmp_path / result["run"]
    assert result["run"] == "model=vae_z=10_arch=gated_run=0000"
    loaded = tf.saved_model.load(str(run_dir / "savedmodel"))
    drawn = loaded.sample(n=tf.constant(3), seed=tf.constant([0, 0]))
    assert all(np.isfinite(v.numpy()).all() for v in drawn.values())
