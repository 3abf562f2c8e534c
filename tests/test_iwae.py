"""IWAE (Burda et al., 2016) as a training objective for every unconditional model, and the
papers' test NLL (-IWAE-N of every test image)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import fit_steps, toy_images
from tfp_vae import models


class MonteCarloKLVAE(models.VAE):
    """The VAE trained on the ELBO with the single-sample Monte-Carlo KL (as the GMVAE)."""
    analytic_kl = False


def test_iwae_1_training_is_elbo_training_with_the_monte_carlo_kl_step_for_step():
    x = toy_images()
    kwargs = dict(z_dim=2, image_shape=(4, 4, 1), seed=7)
    elbo = MonteCarloKLVAE(**kwargs)
    iwae = models.VAE(objective="iwae", train_samples=1, **kwargs)
    iwae.set_weights(elbo.get_weights())
    start = [w.numpy() for w in elbo.trainable_variables]
    for a, b, w0 in zip(fit_steps(elbo, x), fit_steps(iwae, x), start):
        assert not np.allclose(a, w0)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_iwae_objective_gradient_matches_finite_differences():
    """d(mean -IWAE-5)/d(weight) by the tape against a central difference of the same loss
    (the same seed, so the same draws: the loss is a smooth function of the weights)."""
    x = tf.constant(toy_images(3))
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
    history = model.fit(tf.data.Dataset.from_tensors(toy_images()).repeat(), epochs=1,
                        steps_per_epoch=2, verbose=0)
    assert sorted(history.history) == ["kl", "loss", "niwae", "rec"]
    np.testing.assert_allclose(history.history["loss"], history.history["niwae"], rtol=1e-5)
    config = model.get_config()
    assert config["objective"] == "iwae" and config["train_samples"] == 4


@pytest.mark.parametrize("kind", ["ssvae", "fsvae"])
def test_the_labelled_models_refuse_the_iwae_objective(kind):
    with pytest.raises(ValueError, match="trains on its ELBO only"):
        models.get(kind)(objective="iwae", train_samples=5)


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
