"""The GMVAE: mixture prior layer, Monte-Carlo KL, IWAE memory, export and bin tools."""

import json
import math
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_vae import distributions, export, models
from conftest import run_tool
from test_models import _mock_images


def _numpy_mixture_log_prob(z, means, variances):
    """Float64 log (1/k) sum_j N(z; m_j, diag(v_j)) with a max-shifted log-sum-exp."""
    z, means, variances = (np.asarray(a, np.float64) for a in (z, means, variances))
    log_n = -0.5 * (np.log(2 * np.pi * variances)[None] +
                    (z[:, None, :] - means[None]) ** 2 / variances[None]).sum(-1)
    top = log_n.max(1, keepdims=True)
    return (top + np.log(np.exp(log_n - top).mean(1, keepdims=True)))[:, 0]


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-5), ("float64", 1e-12)])
def test_mixture_log_density_matches_float64_numpy_even_far_away(dtype, rtol):
    layer = distributions.MixturePrior(dim=10, k=500, dtype=dtype)
    z_pre = layer.z_pre.numpy()
    means, variances = z_pre[:500], np.log1p(np.exp(z_pre[500:].astype(np.float64))) + 1e-8
    rng = np.random.RandomState(0)
    z = np.concatenate([rng.randn(20, 10), rng.randn(5, 10) * 1e3]).astype(dtype)
    got = layer.distribution().log_prob(z).numpy()
    want = _numpy_mixture_log_prob(z, means, variances)
    assert got.dtype == dtype
    assert np.all(np.isfinite(got)) and want[-1] < -1e6  # far points: no underflow to -inf
    np.testing.assert_allclose(got, want, rtol=rtol)


def test_mixture_prior_is_parameterised_and_initialised_as_the_reference():
    keras.utils.set_random_seed(0)
    layer = distributions.MixturePrior(dim=10, k=500)
    z_pre = layer.z_pre.numpy()
    assert z_pre.shape == (1000, 10)
    assert abs(z_pre.std() - 1 / math.sqrt(5000)) < 0.002
    components = layer.components()
    np.testing.assert_allclose(components.mean(), z_pre[:500])
    np.testing.assert_allclose(components.variance(), np.log1p(np.exp(z_pre[500:])) + 1e-8,
                               rtol=1e-5)
    mixture = layer.distribution()
    np.testing.assert_allclose(mixture.mixture_distribution.probs_parameter(),
                               np.full(500, 1 / 500))


def test_gmvae_with_one_unit_component_equals_the_vae_bound_in_expectation():
    vae = models.VAE(z_dim=3, seed=0)
    gmvae = models.GMVAE(z_dim=3, k=1, seed=0)
    gmvae.encoder.set_weights(vae.encoder.get_weights())
    gmvae.decoder.set_weights(vae.decoder.get_weights())
    unit = np.log(np.expm1(1.0 - 1e-8))  # softplus(unit) + 1e-8 = 1
    gmvae.prior_layer.z_pre.assign([[0.0, 0.0, 0.0], [unit] * 3])
    x = np.tile(_mock_images(4), (5000, 1))
    g, v = gmvae.negative_elbo(x, seed=[1, 2]), vae.negative_elbo(x, seed=[1, 2])
    np.testing.assert_array_equal(g.rec, v.rec)  # same seed, same z
    means = [t.numpy().reshape(5000, 4).mean(0) for t in (g.kl, v.kl, g.value, v.value)]
    np.testing.assert_allclose(means[0], means[1], atol=0.02)  # MC KL -> analytic KL
    np.testing.assert_allclose(means[2], means[3], rtol=1e-4)


def test_training_moves_the_prior():
    model = models.GMVAE(z_dim=2, k=5, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.prior_layer.z_pre.numpy().copy()
    history = model.fit(_mock_images(128), batch_size=32, epochs=3, verbose=0)
    assert history.history["nelbo"][-1] < history.history["nelbo"][0]
    assert np.abs(model.prior_layer.z_pre.numpy() - before).max() > 0.01
    assert any(v is model.prior_layer.z_pre for v in model.trainable_variables)


def test_gmvae_iwae_decreases_with_m():
    model = models.GMVAE(z_dim=2, k=10, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = _mock_images(128)
    model.fit(x, batch_size=32, epochs=3, verbose=0)  # an untrained model has q = p: no gap
    values = [model.negative_iwae(x, m, seed=[0, m]).value.numpy().mean() for m in (1, 10, 100)]
    assert values[0] > values[1] > values[2]


_MEMORY = r"""
import resource, sys
import numpy as np, tensorflow as tf
from tfp_vae import models
model = models.GMVAE(z_dim=10, k=500)
x = tf.constant(np.random.RandomState(0).binomial(1, 0.2, (100, 784)).astype(np.float32))
f = tf.function(lambda x: model.negative_iwae(x, 1000, seed=[0, 0]).value)
f(x[:2]).numpy()  # trace first
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
value = f(x).numpy()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RESULT", (after - before) / 1024, float(value.mean()))
"""


def test_gmvae_iwae_1000_on_100_images_stays_within_1_gb():
    proc = subprocess.run([sys.executable, "-c", _MEMORY], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    extra_mb, value = map(float, proc.stdout.split("RESULT")[1].split())
    assert extra_mb < 1024 and np.isfinite(value)


_LOAD = r"""
import json, sys
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
s = loaded.sample(n=tf.constant(4), seed=tf.constant([1, 2]))
c = loaded.sample_components(components=tf.constant([0, 3]), n=tf.constant(5),
                             seed=tf.constant([1, 2]))
print("RESULT" + json.dumps({"x": s["x"].numpy().tolist(), "c": c["probs"].numpy().tolist(),
                             "tfp_vae": any(m.startswith("tfp_vae") for m in sys.modules)}))
"""


def test_export_and_reload_samples_from_the_mixture(tmp_path):
    model = models.GMVAE(z_dim=3, k=4, seed=1)
    export.export(model, tmp_path / "m")
    proc = subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path / "m")], capture_output=True,
                          text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert not out["tfp_vae"]
    np.testing.assert_array_equal(out["x"], model.sample(4, seed=[1, 2])["x"])
    np.testing.assert_allclose(out["c"], model.sample_components([0, 3], 5, [1, 2])["probs"],
                               rtol=1e-5, atol=1e-6)
    assert np.asarray(out["c"]).shape == (10, 784)


def test_sample_components_draw_from_the_chosen_component():
    model = models.GMVAE(z_dim=2, k=3, seed=0)
    model.prior_layer.z_pre.assign([[-50.0, 0.0], [0.0, 0.0], [50.0, 0.0]] + [[-20.0, -20.0]] * 3)
    decoded_means = []
    for j in range(3):
        z_mean = model.prior_layer.components().mean()[j]
        decoded_means.append(model.decode(z_mean[None]).mean().numpy()[0])
    out = model.sample_components([2, 0], 3, [0, 0])["probs"].numpy()
    np.testing.assert_allclose(out[:3], np.tile(decoded_means[2], (3, 1)), atol=1e-4)
    np.testing.assert_allclose(out[3:], np.tile(decoded_means[0], (3, 1)), atol=1e-4)


def test_bin_train_gmvae_and_sample_components(tmp_path):
    proc = run_tool("train", "--model=gmvae", "--k=20", "--iter_max=10", "--iter_save=10",
                    "--log_every=10", "--eval_repeats=2", "--iwae_samples=1,10", "--nofull_test",
                    f"--out_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    model_dir = tmp_path / "model=gmvae_z=10_k=20_run=0000" / "savedmodel"
    assert export.read_metadata(model_dir)["config"]["k"] == 20
    png = tmp_path / "c.png"
    proc = run_tool("sample", f"--model_dir={model_dir}", "--components=0,5,19", "--n=7",
                    f"--out={png}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tuple(tf.io.decode_png(png.read_bytes()).shape) == (84, 196, 1)
    proc = run_tool("sample", f"--model_dir={model_dir}", "--components=20", f"--out={png}")
    assert proc.returncode == 2 and "must lie in 0..19" in proc.stderr


def test_mixture_log_density_stays_accurate_for_narrow_components_far_from_zero():
    """The matrix-product form of the density cancels large terms when the components are
    narrow and far from 0; it must stay within 1e-3 nats of float64 (the Monte-Carlo standard
    error of the reference NELBO is 0.04)."""
    layer = distributions.MixturePrior(dim=10, k=500)
    rng = np.random.RandomState(1)
    means = rng.uniform(-3, 3, (500, 10))
    raw = np.log(np.expm1(np.full((500, 10), 0.01)))  # softplus(raw) = 0.01
    layer.z_pre.assign(np.concatenate([means, raw]).astype(np.float32))
    z_pre = layer.z_pre.numpy().astype(np.float64)
    variances = np.log1p(np.exp(z_pre[500:])) + 1e-8
    z = (z_pre[:500][:50] + rng.randn(50, 10) * 0.1).astype(np.float32)  # near components
    got = layer.distribution().log_prob(z).numpy()
    want = _numpy_mixture_log_prob(z, z_pre[:500], variances)
    np.testing.assert_allclose(got, want, atol=1e-3)
