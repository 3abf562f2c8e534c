"""The VAE with two stochastic layers (Burda et al., 2016): its networks are the paper's, its
bounds are the chain's densities computed by hand, and it trains on the IWAE, resumes nothing
special, exports and samples through bin/train like every model."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_vae import errors, export, models, train


def _log_normal(h, mean, variance):
    """log N(h; mean, diag(variance)) summed over the last axis, in float64 NumPy."""
    h, mean, variance = (np.asarray(a, np.float64) for a in (h, mean, variance))
    return np.sum(-0.5 * ((h - mean) ** 2 / variance + np.log(2 * math.pi * variance)), -1)


def _x(n=5):
    return tf.cast(tf.random.stateless_uniform([n, 784], seed=[3, 4]) < 0.3, tf.float32)


def test_the_networks_are_burdas_two_layer_architecture():
    """Section 5: h1 of 100 and h2 of 50 units; two deterministic layers of 200 units between x
    and h1 and of 100 between h1 and h2, tanh, in both networks; p(h2) = N(0, I)."""
    model = models.TwoLayerVAE(arch="burda")
    units = lambda layer: [d.units for d in layer.net.dense]  # noqa: E731
    assert units(model.encoder.q1) == [200, 200, 2 * 100]
    assert units(model.encoder.q2) == [100, 100, 2 * 50]
    assert units(model.prior_layer.p1) == [100, 100, 2 * 100]
    assert units(model.decoder) == [200, 200, 784]
    assert model.z_dim == 150 and model.get_config()["z_dim"] == 100
    h = x = _x(2)
    net = model.encoder.q1.net
    for layer in net.dense[:2]:
        h = tf.tanh(h @ layer.kernel + layer.bias)
    np.testing.assert_allclose(net(x), h @ net.dense[2].kernel + net.dense[2].bias, atol=1e-5)


def test_the_bounds_are_the_chains_densities_by_hand():
    """-ELBO(x) = -log p(x | h1) - log p(h1 | h2) - log p(h2) + log q(h1 | x) + log q(h2 | h1)
    at the z = (h1, h2) the bound draws; -IWAE-1 is the same; -IWAE-m <= -ELBO on average."""
    model = models.TwoLayerVAE(z_dim=6, z2=3)
    x, seed = _x(), tf.constant([1, 2])
    z = model.encode(x).sample(seed=seed).numpy()
    h1, h2 = z[:, :6], z[:, 6:]
    q1, q2 = model.encoder.q1(x), model.encoder.q2(h1)
    p1 = model.prior_layer.p1(h2)
    log_q = _log_normal(h1, q1.mean(), q1.variance()) + _log_normal(h2, q2.mean(), q2.variance())
    log_p = _log_normal(h2, 0.0, 1.0) + _log_normal(h1, p1.mean(), p1.variance())
    logits = np.asarray(model.decoder(h1).distribution.logits, np.float64)
    rec = -np.sum(x * logits - np.logaddexp(0, logits), -1)
    bound = model.negative_elbo(x, seed=seed)
    np.testing.assert_allclose(bound.kl, log_q - log_p, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(bound.rec, rec, rtol=1e-5)
    np.testing.assert_allclose(model.negative_iwae(x, 1, seed=seed).value, bound.value)
    iwae = model.negative_iwae(_x(50), 20, seed=seed).value
    assert np.mean(iwae) < np.mean(model.negative_elbo(_x(50), seed=seed).value)
    # The IWAE's draws carry a sample axis, (S, B, d): the same densities, draw by draw.
    q, zs = model.encode(x), model.encode(x).sample(4, seed=seed).numpy()
    by_hand = [_log_normal(z[:, :6], q1.mean(), q1.variance()) + _log_normal(
        z[:, 6:], model.encoder.q2(z[:, :6]).mean(), model.encoder.q2(z[:, :6]).variance())
        for z in zs]
    np.testing.assert_allclose(q.log_prob(zs), by_hand, rtol=1e-4, atol=1e-3)
    with pytest.raises(NotImplementedError, match="has no closed form; draw samples, or use "
                                                  "the model's embed"):
        q.mean()


def test_generation_from_noise_follows_the_prior_chain():
    """generate(eps): h2 = eps's last z2 columns, h1 = mean + stddev * eps's first z_dim of
    p(h1 | h2); the picture is p(x | h1)'s mean."""
    model = models.TwoLayerVAE(z_dim=4, z2=2)
    eps = tf.random.stateless_normal([3, 6], seed=[5, 6])
    p1 = model.prior_layer.p1(eps[:, 4:])
    h1 = p1.mean() + p1.stddev() * eps[:, :4]
    np.testing.assert_allclose(model.generate(eps), model.decoder(h1).mean(), atol=1e-6)
    assert model.sample(7, seed=[0, 1])["x"].shape == (7, 784)


def test_conv_networks_and_own_networks_are_refused():
    with pytest.raises(errors.ConfigError, match="--arch=conv is not a network of the "
                                                 "two_layer_vae; choose one of mlp, gated, burda"):
        train.Settings(model="two_layer_vae", arch="conv").resolve()
    with pytest.raises(ValueError, match="builds its own networks"):
        models.TwoLayerVAE(encoder=keras.layers.Dense(4))


def test_trains_on_the_iwae_and_exports_through_bin_train(tmp_path):
    config = train.Settings(model="two_layer_vae", z=4, z2=2, arch="burda", objective="iwae",
                            train_samples=3, iter_max=4, iter_save=2, log_every=2,
                            batch_size=8, eval_repeats=1, iwae_samples=(1, 2), full_test=False,
                            out_dir=str(tmp_path), verbose=0)
    result = train.run(config)
    run_dir = tmp_path / result["run"]
    assert result["run"].startswith("model=two_layer_vae_z=4_z2=2_arch=burda_objective=iwae")
    assert json.loads((run_dir / "config.json").read_text())["z2"] == 2
    assert export.read_metadata(run_dir / "savedmodel")["latent_dim"] == 6
    loaded = tf.saved_model.load(str(run_dir / "savedmodel"))
    encoded = loaded.encode(x=_x(3))
    assert encoded["mean"].shape == (3, 6) and encoded["variance"].shape == (3, 6)
    drawn = loaded.sample(n=tf.constant(2), seed=tf.constant([0, 0]))["x"]
    assert drawn.shape == (2, 784)
    assert np.isfinite(result["subset"]["niwae"][2]["mean"])
