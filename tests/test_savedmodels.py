"""The pretrained models in savedmodels/: each loads in a fresh process without tfp_vae, has the
signatures its metadata lists, samples, and its evaluation.json agrees with a fresh evaluation."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_tool

KINDS = ("vae", "gmvae", "ssvae", "fsvae", "vampprior")
FOLDER = ROOT / "savedmodels"

_LOAD_ALL = r"""
import json, sys
import numpy as np
import tensorflow as tf
out = {}
for path in sys.argv[1:]:
    meta = json.load(open(path + "/assets.extra/tfp_vae.json"))
    m = tf.saved_model.load(path)
    seed = tf.constant([1, 2], tf.int32)
    if "class_grid" in meta["signatures"]:
        pictures = m.class_grid(columns=tf.constant(3), seed=seed)
    else:
        pictures = m.sample(n=tf.constant(6), seed=seed)
    picture = pictures[meta["picture_keys"][1]].numpy()
    out[meta["kind"]] = {"signatures": sorted(m.signatures), "listed": meta["signatures"],
                         "shape": list(picture.shape), "min": float(picture.min()),
                         "max": float(picture.max()), "std": float(picture.std())}
out["tfp_vae_imported"] = any(name.startswith("tfp_vae") for name in sys.modules)
print("RESULT" + json.dumps(out))
"""


def test_each_pretrained_model_loads_without_tfp_vae_and_samples():
    paths = [str(FOLDER / kind) for kind in KINDS]
    proc = subprocess.run([sys.executable, "-c", _LOAD_ALL, *paths], capture_output=True,
                          text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert not out.pop("tfp_vae_imported")
    assert sorted(out) == sorted(KINDS)
    for kind, result in out.items():
        assert result["signatures"] == sorted(result["listed"] + ["serving_default"]), kind
        rows = 30 if kind in ("ssvae", "fsvae") else 6
        assert result["shape"] == [rows, 784], kind
        assert 0 <= result["min"] and result["max"] <= 1 and result["std"] > 0.05, kind


def test_every_model_of_savedmodels_has_the_signatures_of_this_version():
    """Each model in savedmodels/ (the kinds and the recipes) was exported by this version, with
    the signatures every export now has (``generate``, sampling from given noise, came last)."""
    metas = sorted(FOLDER.glob("**/assets.extra/tfp_vae.json"))
    assert len(metas) >= len(KINDS) + 4
    for meta in metas:
        signatures = set(json.loads(meta.read_text())["signatures"])
        assert {"encode", "decode", "generate", "sample", "negative_elbo",
                "negative_iwae"} <= signatures, meta


def test_each_pretrained_model_has_its_evaluation_and_stays_small():
    from tfp_vae import pretrained
    assert tuple(sorted(pretrained.kinds())) == tuple(sorted(KINDS))  # what ships
    for kind in KINDS:
        assert pretrained.path(kind) == str(FOLDER / kind)
        evaluation = json.loads((FOLDER / kind / "evaluation.json").read_text())
        assert evaluation["run"].startswith(f"model={kind}")
        size = sum(p.stat().st_size for p in (FOLDER / kind).rglob("*") if p.is_file())
        assert size < 15 * 2**20, (kind, size)


def test_each_recipe_model_carries_its_card_with_its_own_numbers():
    """savedmodels/<recipe>/: the run's config.json names the recipe; MODEL_CARD.md states the
    paper's NLL, the run's (evaluation.json's, -IWAE-5000 of all 10,000 test images) and the
    weights digest of evaluation.json, and the command that gives the NLL again."""
    from tfp_vae import pretrained, recipes
    shipped = [name for name in pretrained.names() if name in recipes.RECIPES]
    assert "vampprior-paper/vae" in shipped
    for name in shipped:
        folder = FOLDER / name
        card = (folder / "MODEL_CARD.md").read_text()
        evaluation = json.loads((folder / "evaluation.json").read_text())
        assert json.loads((folder / "config.json").read_text())["recipe"] == name
        assert evaluation["nll"]["samples"] == 5000 and evaluation["nll"]["n"] == 10_000
        assert f"test NLL **{recipes.get(name).paper_nll:.2f}**" in card
        assert f"test NLL **{evaluation['nll']['mean']:.2f}**" in card
        assert f"`{evaluation['weights_sha256']}`" in card
        assert f"bin/evaluate --model_dir=pretrained:{name} --nll_samples=5000" in card
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        assert size < 15 * 2**20, (name, size)


def _recipe_models(model):
    """The shipped recipe models (savedmodels/<paper>/<recipe>/) of ``--model=model``."""
    return sorted(str(path.parent.relative_to(FOLDER)) for path in FOLDER.glob("*/*/config.json")
                  if json.loads(path.read_text())["model"] == model)


@pytest.mark.parametrize("name", _recipe_models("vae"))
def test_a_recipe_models_nll_agrees_with_an_independent_estimate(name):
    """-log (1/S) sum_s p(x, z_s) / q(z_s | x) in float64 NumPy from the SavedModel's encode and
    decode signatures and the N(0, I) prior (written here, not tfp_vae's bounds) on the first
    20 test images (binarised once, seed 0), S = 1,000: the mean over images agrees with the
    negative_iwae signature's within its Monte-Carlo noise (a grouping, sign or scale fault in
    the NLL would be off by nats). Every shipped recipe model with the standard-normal prior."""
    import tensorflow as tf
    from scipy.special import logsumexp
    from tfp_vae import data
    x = next(data.test_batches(data.load_mnist(), batch_size=20))[0].astype(np.float64)
    m = tf.saved_model.load(str(FOLDER / name))
    q = m.signatures["encode"](x=tf.constant(x, tf.float32))
    mean, var = (q[k].numpy().astype(np.float64) for k in ("mean", "variance"))
    eps = np.random.default_rng(0).standard_normal((20, 1000, mean.shape[1]))
    z = mean[:, None] + np.sqrt(var[:, None]) * eps
    logits = m.signatures["decode"](z=tf.constant(z.reshape(-1, mean.shape[1]), tf.float32))
    logits = logits["logits"].numpy().astype(np.float64).reshape(20, 1000, -1)
    log_w = (np.sum(x[:, None] * logits - np.logaddexp(0, logits), -1)
             + np.sum(-0.5 * (z ** 2 + np.log(2 * np.pi)), -1)
             - np.sum(-0.5 * (eps ** 2 + np.log(2 * np.pi * var[:, None])), -1))
    ours = np.log(1000) - logsumexp(log_w, 1)
    theirs = m.signatures["negative_iwae"](x=tf.constant(x, tf.float32), m=tf.constant(1000),
                                           seed=tf.constant([7, 7]))["niwae"].numpy()
    assert 70 < ours.mean() < 100
    assert abs(ours.mean() - theirs.mean()) < 0.5, (ours.mean(), theirs.mean())


# The course's ranges (docs/reference.md, section 8): the published solution, the independent
# single runs reported for the same code and protocol, widened by about one nat (three
# published evaluation standard deviations) on each side. Not our own numbers.
COURSE_RANGES = {
    # the official 101.5 / 19.29 / 82.57; single runs 100.56 to 101.51, KL 19.31 to 19.45,
    # Rec 81.13 to 82.10, -IWAE-1000 95.62 to 97.28
    "vae": {"nelbo": (99.5, 103.0), "kl": (18.5, 20.5), "rec": (80.0, 84.5),
            "iwae_1000": (94.5, 98.5)},
    # the official 97.22 / 17.65 / 79.58; single runs 97.72 to 99.35, KL 17.69 to 17.77,
    # Rec 80.03 to 81.64, -IWAE-1000 93.38 to 95.37
    "gmvae": {"nelbo": (96.0, 100.5), "kl": (16.5, 19.0), "rec": (78.5, 82.5),
              "iwae_1000": (92.5, 96.5)},
}
# SSVAE, gw = 1: the official 93.40 +- 1.39 %, single runs 92.71 to 94.91 %.
SSVAE_ACCURACY = (0.92, 0.96)


@pytest.mark.parametrize("kind", ["vae", "gmvae"])
def test_pretrained_bounds_lie_in_the_courses_ranges(kind):
    """The stored evaluation.json, not a re-run of our code: the subset numbers lie in the span
    of the course's published and reported runs, -IWAE-1 agrees with the NELBO (the same
    estimator in expectation), -IWAE-m falls with m, and the protocol's repeat counts are the
    reference's: 100 calls of the NELBO, max(100 // m, 1) of -IWAE-m (100, 10, 1, 1)."""
    subset = json.loads((FOLDER / kind / "evaluation.json").read_text())["subset"]
    ranges = COURSE_RANGES[kind]
    for name in ("nelbo", "kl", "rec"):
        low, high = ranges[name]
        assert low <= subset[name]["mean"] <= high, (kind, name, subset[name])
        assert subset[name]["n"] == 100
    low, high = ranges["iwae_1000"]
    assert low <= subset["niwae"]["1000"]["mean"] <= high
    np.testing.assert_allclose(subset["nelbo"]["mean"], subset["kl"]["mean"]
                               + subset["rec"]["mean"], rtol=1e-6)
    assert abs(subset["niwae"]["1"]["mean"] - subset["nelbo"]["mean"]) < 0.5
    means = [subset["niwae"][m]["mean"] for m in ("1", "10", "100", "1000")]
    assert means == sorted(means, reverse=True)
    assert [subset["niwae"][m]["n"] for m in ("1", "10", "100", "1000")] == [100, 10, 1, 1]


def test_pretrained_classifiers_lie_in_the_courses_range():
    """The SSVAE's stored test accuracy (gw = 1, 100 labels, all 10,000 test images) lies in
    the course's range; the FSVAE, which the course judges by eye, has its samples recognised
    by a checking classifier far above chance (our own criterion: over 90 %)."""
    ssvae = json.loads((FOLDER / "ssvae" / "evaluation.json").read_text())["classifier"]
    assert ssvae["n"] == 10_000 and SSVAE_ACCURACY[0] <= ssvae["accuracy"] <= SSVAE_ACCURACY[1]
    assert np.sum(ssvae["confusion"]) == 10_000
    fsvae = json.loads((FOLDER / "fsvae" / "evaluation.json").read_text())["sample_check"]
    assert fsvae["n"] == 1000 and fsvae["accuracy"] > 0.9


@pytest.mark.parametrize("kind", ["vae", "gmvae", "vampprior-paper/vae"])
def test_pretrained_evaluation_agrees_with_a_fresh_one(kind, tmp_path):
    """Two repeats of the reference protocol against the stored 100: equal within four standard
    deviations of the Monte-Carlo noise of two repeats."""
    stored = json.loads((FOLDER / kind / "evaluation.json").read_text())["subset"]["nelbo"]
    out = tmp_path / "eval.json"
    proc = run_tool("evaluate", f"--model_dir={FOLDER / kind}", "--eval_repeats=2",
                    "--iwae_samples=1", "--nofull_test", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(out.read_text())["subset"]["nelbo"]
    spread = stored["se"] * math.sqrt(stored["n"])  # sd of one repeat
    assert abs(fresh["mean"] - stored["mean"]) < 4 * spread / math.sqrt(2) + 4 * stored["se"]


def test_pretrained_ssvae_accuracy_is_reproduced_exactly(tmp_path):
    stored = json.loads((FOLDER / "ssvae" / "evaluation.json").read_text())["classifier"]
    out = tmp_path / "eval.json"
    proc = run_tool("evaluate", f"--model_dir={FOLDER / 'ssvae'}", "--nofull_test",
                    f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(out.read_text())["classifier"]
    assert fresh["accuracy"] == stored["accuracy"]
    np.testing.assert_array_equal(fresh["confusion"], stored["confusion"])


def test_pretrained_fsvae_bounds_are_reproduced_exactly(tmp_path):
    """The same seeds as the run's evaluation: the bounds of -log p(x | y) on the 10k test images
    agree to float32 rounding; a briefly trained checking classifier still recognises most
    samples."""
    stored = json.loads((FOLDER / "fsvae" / "evaluation.json").read_text())
    out = tmp_path / "eval.json"
    proc = run_tool("evaluate", f"--model_dir={FOLDER / 'fsvae'}", "--check_steps=300",
                    f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(out.read_text())
    for name in ("nelbo", "niwae_100"):
        np.testing.assert_allclose(fresh["full_test"][name]["mean"],
                                   stored["full_test"][name]["mean"], rtol=1e-4)
    assert fresh["sample_check"]["n"] == 1000 and fresh["sample_check"]["accuracy"] > 0.8
