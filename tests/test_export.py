"""SavedModel export: a fresh process without tfp_vae, and TensorFlow's session loader."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tfp_vae import export, models

_LOADER = r"""
import json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])
seed = tf.constant([3, 4], tf.int32)
a = loaded.sample(n=tf.constant(6), seed=seed)
b = loaded.sample(n=tf.constant(6), seed=seed)
out = {
    "sample_x": a["x"].numpy().tolist(),
    "same_seed_same_sample": bool(np.array_equal(a["x"], b["x"])),
    "nelbo": loaded.negative_elbo(x=x, seed=seed)["nelbo"].numpy().tolist(),
    "niwae": loaded.negative_iwae(x=x, m=tf.constant(50), seed=seed)["niwae"].numpy().tolist(),
    "mean": loaded.encode(x=x)["mean"].numpy().tolist(),
    "signatures": sorted(loaded.signatures),
    "tfp_vae_imported": any(m.startswith("tfp_vae") for m in sys.modules),
    "tfp_imported": "tensorflow_probability" in sys.modules,
}
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "savedmodel"
    model = models.VAE(z_dim=4, seed=2)
    export.export(model, path)
    x = np.random.RandomState(0).binomial(1, 0.3, (5, 784)).astype(np.float32)
    np.save(path.parent / "x.npy", x)
    return model, path, x


def test_loads_in_a_process_that_never_imports_tfp_vae(exported):
    model, path, x = exported
    proc = subprocess.run([sys.executable, "-c", _LOADER, str(path), str(path.parent / "x.npy")],
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert not out["tfp_vae_imported"] and not out["tfp_imported"]
    assert out["same_seed_same_sample"]
    assert out["signatures"] == ["decode", "encode", "negative_elbo", "negative_iwae", "sample",
                                 "serving_default"]
    np.testing.assert_array_equal(out["sample_x"], model.sample(6, seed=[3, 4])["x"])
    np.testing.assert_allclose(out["nelbo"], model.negative_elbo(x, seed=[3, 4]).value, rtol=1e-5)
    np.testing.assert_allclose(out["niwae"], model.negative_iwae(x, 50, seed=[3, 4]).value, rtol=1e-5)
    np.testing.assert_allclose(out["mean"], model.encode(x).mean(), rtol=1e-5, atol=1e-6)


def test_runs_under_the_session_loader_of_saved_model_cli(exported, tmp_path):
    _, path, _ = exported
    np.save(tmp_path / "seed.npy", np.array([1, 2], np.int32))
    np.save(tmp_path / "n.npy", np.array(3, np.int32))
    proc = subprocess.run(
        ["saved_model_cli", "run", "--dir", str(path), "--tag_set", "serve",
         "--signature_def", "sample", "--inputs",
         f"n={tmp_path / 'n.npy'};seed={tmp_path / 'seed.npy'}",
         "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    drawn = np.load(tmp_path / "out" / "x.npy")
    assert drawn.shape == (3, 784) and set(np.unique(drawn)) <= {0.0, 1.0}


def test_metadata_names_the_model(exported):
    _, path, _ = exported
    meta = export.read_metadata(path)
    assert meta["kind"] == "vae" and meta["config"]["z_dim"] == 4
    assert meta["image_shape"] == [28, 28, 1]


def test_reading_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(export.NotAModelError, match="not a SavedModel folder"):
        export.read_metadata(tmp_path)


def test_export_replaces_an_older_model_atomically(exported, tmp_path):
    model, _, _ = exported
    path = tmp_path / "m"
    export.export(model, path)
    export.export(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary or old folder left


def test_a_wrong_input_shape_names_the_signature_and_the_shape(exported, tmp_path):
    import tensorflow as tf
    _, path, _ = exported
    loaded = tf.saved_model.load(str(path))
    with pytest.raises(TypeError, match=r"TensorSpec\(shape=\(None, 784\)"):
        loaded.encode(x=np.zeros((2, 100), np.float32))  # checked by TensorFlow
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"encode: input x must have shape \(batch, 784\)"):
        loaded.signatures["encode"](x=tf.zeros((2, 100)))  # checked by the exported function
    np.save(tmp_path / "bad.npy", np.zeros((2, 100), np.float32))
    proc = subprocess.run(["saved_model_cli", "run", "--dir", str(path), "--tag_set", "serve",
                           "--signature_def", "encode", "--inputs", f"x={tmp_path / 'bad.npy'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Cannot feed value of shape (2, 100) for Tensor encode_x:0, which has shape (None, 784)" \
        in proc.stderr
