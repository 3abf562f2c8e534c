"""Beyond the homework: training on the IWAE bound, the VampPrior, the full-test NLL metric."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_vae import models


def _images(n=64, dim=16, seed=0):
    rng = np.random.RandomState(seed)
    prototypes = rng.binomial(1, 0.4, (3, dim))
    return np.abs(prototypes[rng.randint(0, 3, n)] - rng.binomial(1, 0.1, (n, dim))).astype(
        np.float32)


class MonteCarloKLVAE(models.VAE):
    """The VAE trained on the ELBO with the single-sample Monte-Carlo KL (as the GMVAE)."""
    analytic_kl = False


def _train(model, x, steps=5):
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    model.fit(tf.data.Dataset.from_tensors(x).repeat(), epochs=1, steps_per_epoch=steps,
              verbose=0)
    return [w.numpy() for w in model.trainable_variables]


def test_iwae_1_training_is_elbo_training_with_the_monte_carlo_kl_step_for_step():
    x = _images()
    kwargs = dict(z_dim=2, image_shape=(4, 4, 1), seed=7)
    elbo = MonteCarloKLVAE(**kwargs)
    iwae = models.VAE(objective="iwae", train_samples=1, **kwargs)
    iwae.set_weights(elbo.get_weights())
    start = [w.numpy() for w in elbo.trainable_variables]
    for a, b, w0 in zip(_train(elbo, x), _train(iwae, x), start):
        assert not np.allclose(a, w0)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_iwae_objective_gradient_matches_finite_differences():
    """d(mean -IWAE-5)/d(weight) by the tape against a central difference of the same loss
    (the same seed, so the same draws: the loss is a smooth function of the weights)."""
    x = tf.constant(_images(3))
    model = models.VAE(z_dim=2, image_shape=(4, 4, 1), seed=1, objective="iwae",
                       train_samples=5)
    seed = tf.constant([3, 4], tf.int32)

    def loss():
        return model.loss_and_terms(x, seed)[0]
    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, model.trainable_variables)
    rng = np.random.RandomState(0)
    checked = 0
    for var, grad in zip(model.trainable_variables, grads):
        flat = var.numpy().ravel()
        for i in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            eps = 1e-2
            shifted = []
            for sign in (1, -1):
                new = flat.copy()
                new[i] += sign * eps
                var.assign(new.reshape(var.shape))
                shifted.append(float(loss()))
            var.assign(flat.reshape(var.shape))
            numeric = (shifted[0] - shifted[1]) / (2 * eps)
            np.testing.assert_allclose(grad.numpy().ravel()[i], numeric, rtol=2e-2, atol=2e-3)
            checked += 1
    assert checked >= 12


def test_iwae_training_reports_the_bound_it_trains_on():
    model = models.VAE(z_dim=2, image_shape=(4, 4, 1), objective="iwae", train_samples=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(tf.data.Dataset.from_tensors(_images()).repeat(), epochs=1,
                        steps_per_epoch=2, verbose=0)
    assert sorted(history.history) == ["kl", "loss", "niwae", "rec"]
    np.testing.assert_allclose(history.history["loss"], history.history["niwae"], rtol=1e-5)
    config = model.get_config()
    assert config["objective"] == "iwae" and config["train_samples"] == 4


@pytest.mark.parametrize("kind", ["ssvae", "fsvae"])
def test_the_labelled_models_refuse_the_iwae_objective(kind):
    with pytest.raises(ValueError, match="trains on its ELBO only"):
        models.get(kind)(objective="iwae", train_samples=5)


# ------------------------------------------------------------------------------- VampPrior
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
    _train(model, _images(), steps=3)
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


# --------------------------------------------------------------------------- the test NLL
def test_test_log_likelihood_is_the_mean_iwae_of_every_image_with_its_standard_error():
    from tfp_vae import evaluate
    calls = []

    def negative_iwae(x, m, seed):
        calls.append((int(m), tuple(seed.numpy())))
        return (tf.reduce_sum(x, 1) + tf.cast(m, tf.float32),)
    batches = [(np.full((3, 2), v, np.float32), None) for v in (1.0, 2.0)]
    result = evaluate.test_log_likelihood(negative_iwae, batches, 5000)
    values = np.array([5002.0] * 3 + [5004.0] * 3)
    assert result == {"samples": 5000, "mean": values.mean(),
                      "se": values.std(ddof=1) / np.sqrt(6), "n": 6}
    assert [m for m, _ in calls] == [5000, 5000] and calls[0][1] != calls[1][1]


# ------------------------------------------------------------------------------ bin/train
@pytest.mark.parametrize("args, run", [
    (["--model=vampprior", "--pseudo_inputs=7", "--objective=iwae", "--train_samples=3"],
     "model=vampprior_z=10_pseudo_inputs=7_objective=iwae3_run=0000"),
    (["--model=gmvae", "--k=5", "--objective=iwae", "--train_samples=2"],
     "model=gmvae_z=10_k=5_objective=iwae2_run=0000"),
])
def test_bin_train_trains_the_new_objective_and_prior_end_to_end(tmp_path, args, run):
    import json
    from conftest import run_tool
    proc = run_tool("train", *args, "--iter_max=20", "--iter_save=10", "--log_every=10",
                    "--eval_repeats=2", "--iwae_samples=1,10", "--nofull_test", "--nll_samples=5",
                    f"--out_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / run
    result = json.loads((folder / "evaluation.json").read_text())
    assert result["steps"] == 20 and result["nll"]["samples"] == 5
    assert result["nll"]["n"] == 10_000 and result["nll"]["se"] > 0
    assert result["nll"]["mean"] < result["subset"]["nelbo"]["mean"] + 50
    config = json.loads((folder / "config.json").read_text())
    assert config["objective"] == "iwae" and "niwae" in (folder / "history.csv").read_text()
    assert (folder / "savedmodel" / "saved_model.pb").is_file()
    if "vampprior" in run:  # bin/evaluate draws the same picture from the SavedModel
        proc = run_tool("evaluate", f"--model_dir={folder / 'savedmodel'}", "--eval_repeats=1",
                        "--iwae_samples=1", "--nofull_test", f"--pictures_dir={tmp_path / 'p'}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert ((tmp_path / "p" / "pseudo_inputs.png").read_bytes()
                == (folder / "pseudo_inputs.png").read_bytes())


@pytest.mark.parametrize("args, message", [
    (["--objective=iwae", "--train_samples=0"], "flag --train_samples=0: 0 is not a positive"),
    (["--model=ssvae", "--objective=iwae"], "--objective=iwae trains the vae, gmvae, vampprior; "
                                             "the ssvae trains on its ELBO"),
    (["--model=fsvae", "--objective=iwae"], "the fsvae trains on its ELBO"),
    (["--model=vampprior", "--pseudo_inputs=0"],
     "--pseudo_inputs must be a whole number > 0, got 0"),
])
def test_bad_objective_flags_are_one_error_line(tmp_path, args, message):
    from conftest import run_tool
    proc = run_tool("train", *args, f"--out_dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
