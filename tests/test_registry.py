"""The registry of model kinds: every kind builds and exports as declared, and a kind added as
one module and one registry line (the beta-VAE) trains, resumes, evaluates and exports through
bin/train like the others."""

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_tool
from tfp_vae import errors, models, registry, settings

TINY = ["--iter_max=10", "--iter_save=5", "--log_every=5", "--eval_repeats=1",
        "--iwae_samples=1", "--nofull_test", "--batch_size=16"]


def test_every_registered_kind_builds_and_exports_as_its_task_says():
    for name, kind in registry.KINDS.items():
        cls = kind.model_class()
        assert registry.kind_of(cls) == name and models.get(name) is cls
        names = set(cls(z_dim=2, image_shape=(4, 4, 1)).export_endpoints())
        assert ("class_grid" in names) == (kind.task != "unsupervised")


def test_a_hyperparameter_belongs_to_its_kinds_and_is_checked():
    with pytest.raises(errors.ConfigError, match="--beta is a setting of the beta_vae, not of "
                                                 "the vae"):
        settings.Settings(model="vae", beta=2.0).resolve()
    with pytest.raises(errors.ConfigError, match=r"--beta must be a finite number >= 0"):
        settings.Settings(model="beta_vae", beta=-1.0).resolve()
    resolved = settings.Settings(model="beta_vae").resolve()
    assert resolved.beta == 4.0 and "beta" in resolved.identity()


def test_the_beta_vae_loss_weighs_the_kl_and_reports_the_true_bound():
    x = tf.constant(np.random.default_rng(0).integers(0, 2, (6, 16)).astype(np.float32))
    seed = tf.constant([1, 2])
    for beta in (0.0, 1.0, 3.0):
        model = models.BetaVAE(z_dim=2, image_shape=(4, 4, 1), beta=beta)
        loss, terms = model.loss_and_terms(x, seed)
        np.testing.assert_allclose(loss, np.mean(terms["rec"] + beta * terms["kl"]), rtol=1e-6)
        np.testing.assert_allclose(terms["nelbo"], terms["rec"] + terms["kl"], rtol=1e-6)


def test_the_beta_vae_trains_resumes_evaluates_and_exports_through_bin_train(tmp_path):
    proc = run_tool("train", "--model=beta_vae", "--beta=2", f"--out_dir={tmp_path}", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "model=beta_vae_z=10_run=0000"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["beta"] == 2.0 and config["model"] == "beta_vae"
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["steps"] == 10 and 100 < result["subset"]["nelbo"]["mean"] < 800
    # A resume with another beta is refused, naming both; the same beta continues.
    proc = run_tool("train", "--model=beta_vae", "--beta=3", f"--out_dir={tmp_path}", *TINY,
                    "--iter_max=15")
    assert proc.returncode == 2 and "started with --beta=2.0" in proc.stderr \
        and "asks for --beta=3.0" in proc.stderr, proc.stderr[-2000:]
    proc = run_tool("train", "--model=beta_vae", "--beta=2", f"--out_dir={tmp_path}", *TINY,
                    "--iter_max=15")
    assert proc.returncode == 0 and "resumed from" in proc.stdout, proc.stderr[-2000:]
    proc = run_tool("evaluate", f"--model_dir={run_dir / 'savedmodel'}", "--eval_repeats=1",
                    "--iwae_samples=1", "--nofull_test")
    assert proc.returncode == 0 and '"kind": "beta_vae"' in proc.stdout, proc.stderr[-2000:]
