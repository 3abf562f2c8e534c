"""The VampPrior (Tomczak & Welling, 2018): its density in float64, training of the pseudo-inputs,
export and sampling from chosen pseudo-inputs without tfp_vae."""

import numpy as np
import tensorflow as tf

from conftest import fit_steps, toy_images
from tfp_vae import models


def test_vampprior_density_is_the_mixture_of_posteriors_at_the_pseudo_inputs_in_float64():
    """log p(z) = log (1/K) sum_k N(z; mu(u_k), diag(var(u_k))), computed here in float64 from
    the encoder's outputs at the clipped pseudo-inputs, near the components and far away."""
    model = models.VampPrior(z_dim=3, pseudo_inputs=6, image_shape=(4, 4, 1), seed=2)
    u = np.clip(model.prior_layer.raw.numpy(), 0, 1)
    assert u.shape == (6, 16) and 0 <= u.min() and u.max() <= 1
    q = model.encode(tf.constant(u))
    mean, var = q.mean().numpy().astype(np.float64), q.variance().numpy().astype(np.float64)
    rng = np.random.RandomState(1)
    z = np.concatenate([rng.randn(20, 3), rng.randn(4, 3) * 50]).astype(np.float32)
    log_n = -0.5 * (np.log(2 * np.pi * var)[None] +
                    (z.astype(np.float64)[:, None] - mean[None]) ** 2 / var[None]).sum(-1)
    top = log_n.max(1, keepdims=True)
    want = (top + np.log(np.exp(log_n - top).mean(1, keepdims=True)))[:, 0]
    got = model.prior().log_prob(z).numpy()
    assert np.all(np.isfinite(got)) and want[-1] < -100
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_vampprior_trains_its_pseudo_inputs_and_encoder_through_the_prior():
    model = models.VampPrior(z_dim=2, pseudo_inputs=4, image_shape=(4, 4, 1), seed=0)
    before = model.prior_layer.raw.numpy().copy()
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.prior().log_prob(tf.zeros([5, 2])))
    grads = tape.gradient(loss, [model.prior_layer.raw] + model.encoder.trainable_variables)
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads)
    fit_steps(model, toy_images(), steps=3)
    assert not np.array_equal(model.prior_layer.raw.numpy(), before)


def test_vampprior_exports_and_samples_from_chosen_pseudo_inputs_without_tfp_vae(tmp_path):
    import json
    import subprocess
    import sys
    from tfp_vae import export
    model = models.VampPrior(z_dim=2, pseudo_inputs=5, image_shape=(4, 4, 1), seed=0)
    raw = np.random.RandomState(0).uniform(-0.5, 1.5, (5, 16)).astype(np.float32)
    model.prior_layer.raw.assign(raw)  # some outside [0, 1]: the signature gives them clipped
    export.export(model, tmp_path / "m")
    code = ("import json, sys, tensorflow as tf\n"
            "m = tf.saved_model.load(sys.argv[1])\n"
            "out = m.sample_components(components=tf.constant([0, 4]), n=tf.constant(3),\n"
            "                          seed=tf.constant([1, 2]))\n"
            "x = m.negative_iwae(x=tf.zeros([2, 16]), m=tf.constant(10),\n"
            "                    seed=tf.constant([1, 2]))\n"
            "u = m.pseudo_inputs(components=tf.constant([4, 1]))['x'].numpy().tolist()\n"
            "print(json.dumps({'shape': list(out['x'].shape),\n"
            "                  'niwae': x['niwae'].numpy().tolist(),\n"
            "                  'u': u,\n"
            "                  'ours': any(k.startswith('tfp_vae') for k in sys.modules)}))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["shape"] == [6, 16] and not out["ours"]
    want = model.negative_iwae(tf.zeros([2, 16]), 10, seed=tf.constant([1, 2])).value.numpy()
    np.testing.assert_allclose(out["niwae"], want, rtol=1e-5)
    np.testing.assert_array_equal(out["u"], np.clip(raw[[4, 1]], 0, 1))
    assert json.loads((tmp_path / "m" / "assets.extra" / "tfp_vae.json").read_text())[
        "kind"] == "vampprior"
