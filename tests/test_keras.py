"""Keras' conventions: the .keras format round trip (one device and two replicas), summary(),
fit on a tf.data dataset."""

import pytest


def _stream(kind):
    """A tiny training stream of the model's kind (images 4x4, 3 classes)."""
    import numpy as np
    from tfp_vae import data
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (40, 16)).astype(np.uint8)
    labels = np.arange(40) % 3
    if kind == "ssvae":
        return data.semisupervised_dataset(images, labels, images[:6], labels[:6], 8, seed=0)
    return data.train_dataset(images, 8, seed=0, binarized=kind != "fsvae",
                              labels=labels if kind == "fsvae" else None)


def _build(kind, strategy):
    import keras
    from tfp_vae import models
    kwargs = {"z_dim": 2, "image_shape": (4, 4, 1), "seed": 3}
    if kind in ("ssvae", "fsvae"):
        kwargs["num_classes"] = 3
    if kind == "gmvae":
        kwargs["k"] = 4
    if kind == "vampprior":
        kwargs.update(pseudo_inputs=4, objective="iwae", train_samples=3)
    with strategy.scope():
        model = models.get(kind)(**kwargs)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


@pytest.mark.parametrize("kind", ["vae", "gmvae", "ssvae", "fsvae", "vampprior", "two_layer_vae"])
@pytest.mark.parametrize("where", ["one device", "two replicas"])
def test_keras_format_round_trip_keeps_weights_optimizer_and_training(kind, where, tmp_path):
    """model.save("m.keras") and keras.models.load_model: the same class and settings, weights,
    optimizer state and step; fit continues from there exactly as the original does."""
    import keras
    import numpy as np
    import tensorflow as tf
    import conftest
    strategy = conftest.two_cpu_strategy() if where == "two replicas" else \
        tf.distribute.get_strategy()
    model = _build(kind, strategy)
    model.fit(_stream(kind), epochs=1, steps_per_epoch=3, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    with strategy.scope():
        loaded = keras.models.load_model(path)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    assert int(loaded.optimizer.iterations.numpy()) == 3
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for m in (model, loaded):
        m.fit(_stream(kind), epochs=1, steps_per_epoch=2, verbose=0)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_summary_names_the_distributions_keras_cannot_show():
    from tfp_vae import models
    lines = []
    models.GMVAE(z_dim=3, k=4, image_shape=(4, 4, 1)).summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Total params: " in text
    assert "p(z)            uniform mixture of 4 learned diagonal Gaussians over z (3)" in text
    assert "p(x | z)        Bernoulli (logits) over x (4x4x1), mlp decoder" in text
    assert "objective       negative ELBO, Monte-Carlo KL" in text


def test_fit_on_a_dataset_gives_no_shuffle_warning():
    import warnings
    import tensorflow as tf
    model = _build("vae", tf.distribute.get_strategy())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(_stream("vae"), epochs=1, steps_per_epoch=2, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]
