"""tfp_vae.recipes: each recipe resolves to the settings its paper states (the paper's numbers
written here, with the citation), given settings override it, and a recipe run trains."""

import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from conftest import QUIET, run_tool
from tfp_vae import cards, errors, models, recipes, train


class _Images:
    """A dataset of ``n`` training images, as to_steps sees one."""
    def __init__(self, n):
        self.train_images = range(n)


def _settings(name, **given):
    """The recipe's settings on MNIST: resolved, and its epochs made steps over the 60,000
    training images less the validation split."""
    s = train.Settings(recipe=name, **given).resolve()
    return s.to_steps(_Images(60_000 - s.validation))


@pytest.mark.parametrize("name,model,pseudo_inputs,nll", [
    ("vampprior-paper/vae", "vae", None, 88.56),
    ("vampprior-paper/vampprior", "vampprior", 500, 85.57)])
def test_vampprior_paper_recipes_state_the_papers_protocol(name, model, pseudo_inputs, nll):
    """Tomczak & Welling (2018), "VAE with a VampPrior", section 5: MLPs of two gated layers of
    300 units, z = 40, K = 500 pseudo-inputs, batch 100, Adam with learning rate 5e-4, KL
    warm-up over 100 epochs, early stopping after 50 epochs without improvement, at most 2,000
    epochs, 50,000 training and 10,000 validation images of MNIST's 60,000; the test NLL by
    importance sampling with 5,000 samples. Table 2 (MNIST): 88.56 (standard prior), 85.57
    (VampPrior)."""
    s = _settings(name)
    epoch = 50_000 // 100
    assert (s.model, s.kind.dataset, s.likelihood, s.arch, s.z, s.batch_size, s.lr) == \
        (model, "mnist", "auto", "gated", 40, 100, 5e-4)  # auto: Bernoulli for grey images
    assert (s.validation, s.kl_warmup, s.patience, s.iter_max) == \
        (10_000, 100 * epoch, 50 * epoch, 2000 * epoch)
    assert (s.objective, s.lr_schedule, s.adam_epsilon, s.nll_samples) == \
        ("elbo", "constant", 1e-7, 5000)
    assert s.hypers.get("pseudo_inputs") == pseudo_inputs
    assert recipes.get(name).paper_nll == nll and s.recipe == name


@pytest.mark.parametrize("name,model,z,objective,k,nll", [
    ("iwae-paper/vae", "vae", 50, "elbo", 5, 86.76),  # k unused by the ELBO: the default stays
    ("iwae-paper/iwae-k5", "vae", 50, "iwae", 5, 85.54),
    ("iwae-paper/iwae-k50", "vae", 50, "iwae", 50, 84.78),
    ("iwae-paper/vae-2layer", "two_layer_vae", 100, "elbo", 5, 85.33),
    ("iwae-paper/iwae-k5-2layer", "two_layer_vae", 100, "iwae", 5, 83.89),
    ("iwae-paper/iwae-k50-2layer", "two_layer_vae", 100, "iwae", 50, 82.90)])
def test_iwae_paper_recipes_state_the_papers_protocol(name, model, z, objective, k, nll):
    """Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders", section 5: one
    stochastic layer: two deterministic layers of 200 tanh units, 50 latent units; two
    stochastic layers: h1 of 100 and h2 of 50 units (200-200 tanh between x and h1, 100-100
    between h1 and h2); batch 20, Adam with epsilon 1e-4, 3^i passes over the 60,000 training
    images at 0.001 * 10^(-i/7) for i = 0..7 (3,280 passes); the test NLL with k = 5,000.
    Table 1 (MNIST): one layer VAE 86.76, IWAE k = 5 85.54, k = 50 84.78; two layers VAE
    85.33, IWAE k = 5 83.89, k = 50 82.90."""
    s = _settings(name)
    assert (s.model, s.arch, s.z, s.batch_size, s.lr, s.adam_epsilon, s.lr_schedule) == \
        (model, "burda", z, 20, 1e-3, 1e-4, "burda")
    assert s.hypers.get("z2") == (50 if model == "two_layer_vae" else None)
    assert (s.objective, s.train_samples, s.validation, s.kl_warmup, s.patience) == \
        (objective, k, 0, 0, 0)
    assert s.iter_max == 3280 * 60_000 // 20 and s.nll_samples == 5000
    assert recipes.get(name).paper_nll == nll and s.steps_per_epoch == 3000


def test_given_settings_override_a_recipe_but_not_its_model():
    s = _settings("vampprior-paper/vampprior", iter_max=1000, pseudo_inputs=50, lr=1e-3)
    assert (s.iter_max, s.pseudo_inputs, s.lr, s.z) == (1000, 50, 1e-3, 40)
    s = _settings("vampprior-paper/vampprior", hypers={"pseudo_inputs": 50}, batch_size=None)
    assert (s.pseudo_inputs, s.batch_size) == (50, 100)  # None: the recipe's
    # Another batch or split: an epoch is still a pass (55,000 / 50 = 1,100 steps).
    s = _settings("vampprior-paper/vampprior", batch_size=50, validation=5000)
    assert (s.steps_per_epoch, s.kl_warmup, s.patience, s.iter_max) == \
        (1100, 100 * 1100, 50 * 1100, 2000 * 1100)
    with pytest.raises(errors.ConfigError, match="trains --model=vampprior; leave --model out"):
        train.Settings(recipe="vampprior-paper/vampprior", model="vae")
    with pytest.raises(errors.ConfigError, match="--recipe must be one of vampprior-paper/vae"):
        train.Settings(recipe="vampprior")


def test_bin_train_answers_a_bad_recipe_before_tensorflow():
    result = run_tool("train", "--recipe=iwae-paper/iwae-k50", "--model=gmvae")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: --recipe=iwae-paper/iwae-k50 trains --model=vae")


@pytest.mark.parametrize("given, flag", [(dict(objective="iwae"), "--kl_warmup"),
                                         (dict(validation=0), "--patience")])
def test_a_conflict_with_what_the_recipe_set_says_so(given, flag):
    with pytest.raises(errors.ConfigError, match=f"--recipe=vampprior-paper/vampprior sets "
                                                 f"{flag}: give it on the command line"):
        train.Settings(recipe="vampprior-paper/vampprior", **given).resolve()


def test_burda_networks_are_tanh_mlps_of_200_200():
    """arch="burda": x -> 200 -> 200 -> 2 z (tanh), z -> 200 -> 200 -> x, Burda et al.'s."""
    model = models.VAE(z_dim=50, arch="burda")
    mlp = model.encoder.net
    assert [layer.units for layer in mlp.dense] == [200, 200, 100]
    assert [layer.units for layer in model.decoder.net.dense] == [200, 200, 784]
    x = tf.random.stateless_uniform([3, 784], seed=[1, 2])
    h = x
    for layer in mlp.dense[:2]:
        h = tf.tanh(h @ layer.kernel + layer.bias)
    np.testing.assert_allclose(mlp(x), h @ mlp.dense[2].kernel + mlp.dense[2].bias,
                               rtol=1e-5, atol=1e-5)


def test_a_recipe_run_trains_and_writes_its_card(tmp_path):
    result = train.run(train.Settings(recipe="iwae-paper/iwae-k5", iter_max=2, iter_save=2,
                                      log_every=2, nll_samples=10, out_dir=str(tmp_path),
                                      **QUIET))
    run_dir = tmp_path / result["run"]
    assert result["run"] == "model=vae_z=50_arch=burda_objective=iwae5_run=0000"
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["recipe"], config["adam_epsilon"], config["lr_schedule"], config["iter_max"],
            config["steps_per_epoch"]) == ("iwae-paper/iwae-k5", 1e-4, "burda", 2, 3000)
    card = (run_dir / "MODEL_CARD.md").read_text()
    assert "test NLL **85.54**" in card and "Burda, Grosse & Salakhutdinov (2016)" in card
    nll = result["nll"]["mean"]
    assert f"test NLL **{nll:.2f}**" in card and f"{nll - 85.54:+.2f} nats" in card
    # The command that made it: the recipe and what was given beside it, nothing else.
    assert "`bin/train --recipe=iwae-paper/iwae-k5 --iter_max=2 --iter_save=2 --log_every=2 " \
        "--eval_repeats=1 --iwae_samples=1 --nofull_test --nll_samples=10 --noexport`" in card
    assert f"`{result['weights_sha256']}`" in card and "2 steps (0.0 epochs of 3,000 steps); " \
        "**cut short**: 0.0 % of the recipe's 3,280 epochs" in card


def test_a_card_refuses_a_folder_that_is_not_a_finished_recipe_run(tmp_path):
    assert cards.main(["cards", str(tmp_path)]) == 2
    assert not (tmp_path / "MODEL_CARD.md").exists()
    (tmp_path / "config.json").write_text(json.dumps({"recipe": None}))
    (tmp_path / "evaluation.json").write_text("{}")
    with pytest.raises(errors.ConfigError, match="is not a recipe's run"):
        cards.card(str(tmp_path))


def test_a_recipe_model_is_pretrained_by_its_name(tmp_path, monkeypatch):
    from tfp_vae import pretrained
    folder = tmp_path / "vampprior-paper" / "vampprior"
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    monkeypatch.setattr(pretrained, "folders", lambda: [str(tmp_path)])
    assert pretrained.names() == ["vampprior-paper/vampprior"]
    assert pretrained.resolve("pretrained:vampprior-paper/vampprior") == str(folder)
    with pytest.raises(errors.NotAModelError, match="choose one of vampprior-paper/vampprior"):
        pretrained.path("iwae-paper/iwae-k50")


def test_epochs_set_the_length_in_passes_over_the_training_images_left(tmp_path):
    """--epochs: 2 passes over the 1,000 images left after holding 59,000 out, in batches of
    100, are 20 steps; --epochs replaces a recipe's length and excludes --iter_max."""
    settings = train.Settings(model="vae", epochs=2, validation=59_000, batch_size=100,
                              iter_save=10, log_every=10, out_dir=str(tmp_path), **QUIET)
    result = train.run(settings)
    assert result["steps"] == 20
    assert settings.iter_max is None  # run resolves a copy: the caller's settings stay as given
    settings.resolve()  # (iter_max comes from the epochs)
    assert _settings("iwae-paper/vae", epochs=5).iter_max == 5 * 3000
    with pytest.raises(errors.ConfigError, match="--epochs=3 and --iter_max=10 both set"):
        train.Settings(epochs=3, iter_max=10).resolve()


def test_a_card_of_a_run_given_in_epochs_names_epochs_not_steps(tmp_path):
    """A recipe run shortened with --epochs: its card's command repeats --epochs (with
    --iter_max beside it, the command would be refused) and says the run was cut short."""
    result = train.run(train.Settings(recipe="iwae-paper/vae", epochs=2, validation=59_980,
                                      nll_samples=10, out_dir=str(tmp_path), **QUIET))
    assert result["steps"] == 2  # 20 images left, batches of 20: one step an epoch
    card = (tmp_path / result["run"] / "MODEL_CARD.md").read_text()
    command = re.search(r"`(bin/train --recipe=iwae-paper/vae [^`]*)`", card).group(1)
    assert "--epochs=2 " in command and "--iter_max" not in command
    assert "2 steps (2.0 epochs of 1 step); **cut short**: 0.1 % of the recipe's 3,280 " \
        "epochs" in card


def _events(path, points, mtime):
    """A TensorBoard file of ``{step: wall time}`` points (Event records, as tf.summary writes)."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for step, wall in points.items():
            writer.write(tf.compat.v1.Event(wall_time=wall, step=step).SerializeToString())
    os.utime(path, (mtime, mtime))


def test_a_cards_training_time_sums_every_start_at_its_own_rate(tmp_path):
    """Three starts: steps 0-1,000 at 0.1 s a step (100 s), 1,000-3,000 at 0.2 s (400 s), and a
    last start with one point, to step 3,500, at evaluation.json's rate (50 s over 500 steps):
    550 s, whatever the time between the starts."""
    logs = tmp_path / "logs" / "train"
    logs.mkdir(parents=True)
    _events(logs / "events.out.tfevents.1", {100 * i: 10.0 * i for i in range(1, 11)}, 1)
    _events(logs / "events.out.tfevents.2", {1500: 5000.0, 3000: 5300.0}, 2)
    _events(logs / "events.out.tfevents.3", {3500: 90000.0}, 3)
    results = {"train_seconds": 50.0, "steps": 3500, "resumed_from_step": 3000}
    assert cards.training_seconds(str(tmp_path), results) == pytest.approx(550.0)
    assert cards.duration(550.0) == "9 min" and cards.duration(7200) == "2.0 h"


def test_a_card_names_this_machines_cores_and_gpus():
    gpus = len(tf.config.list_physical_devices("GPU"))
    text = cards.machine()
    assert text.startswith(f"{os.cpu_count()} CPU cores (")
    assert text.endswith("no GPU" if not gpus else f"{gpus} GPU{'s' if gpus > 1 else ''}")
