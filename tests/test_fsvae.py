"""FSVAE: the Gaussian decoder term, SVHN's official .mat format, training, export and reload."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from conftest import run_tool
from tfp_vae import data, distributions, export, models
from tfp_vae import sources
from tfp_vae.sources import svhn


def write_svhn_mat(path, n, seed=0, compress=True):
    """A small SVHN file in the official layout: X (32, 32, 3, N) uint8, y (N, 1) uint8 with
    labels 1..10 (10 = digit 0), MATLAB 5 format, zlib-compressed as the published files."""
    rng = np.random.RandomState(seed)
    x = rng.randint(0, 256, (32, 32, 3, n)).astype(np.uint8)
    x[0, 0, 0, 0], x[0, 0, 1, 0] = 0, 255  # the ends of the uint8 range
    y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, so 10 occurs
    scipy.io.savemat(path, {"X": x, "y": y}, format="5", do_compression=compress)
    return x, y


@pytest.fixture(scope="module")
def svhn_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("svhn")
    files = {split: write_svhn_mat(folder / name, n, seed)
             for (split, name), n, seed in zip(svhn.FILES.items(), (40, 30, 50), (1, 2, 3))}
    return folder, files


# ------------------------------------------------------------------------------ the likelihood
def test_gaussian_reconstruction_term_matches_the_direct_formula():
    rng = np.random.RandomState(0)
    mean = rng.randn(4, 3072).astype(np.float32)
    x = rng.rand(4, 3072).astype(np.float32)
    rec = -distributions.FixedVarianceGaussian(0.1)(tf.constant(mean)).log_prob(x).numpy()
    sse = np.sum((x.astype(np.float64) - mean) ** 2, -1)
    np.testing.assert_allclose(rec, 5 * sse + 3072 / 2 * math.log(2 * math.pi * 0.1), rtol=1e-5)
    # The reference's form of the constant: rec = 5 SSE - 713.8 for 3072 pixels.
    np.testing.assert_allclose(rec - 5 * sse, -713.8, atol=0.05)


def test_negative_elbo_is_analytic_kl_plus_gaussian_reconstruction():
    model = models.FSVAE(image_shape=(28, 28, 1), seed=0)
    rng = np.random.RandomState(1)
    x, y = rng.rand(5, 784).astype(np.float32), np.arange(5)
    bound = model.negative_elbo(x, y, seed=[3, 4])
    q = model.encode(x, y)
    kl = 0.5 * np.sum(q.variance() + q.mean() ** 2 - 1 - np.log(q.variance()), -1)
    np.testing.assert_allclose(bound.kl, kl, rtol=1e-4)
    z = q.sample(seed=tf.constant([3, 4]))
    mean = model.decode(z, y).mean().numpy()
    rec = 5 * np.sum((x - mean) ** 2, -1) + 784 / 2 * math.log(2 * math.pi * 0.1)
    np.testing.assert_allclose(bound.rec, rec, rtol=1e-4)
    np.testing.assert_allclose(bound.value, bound.kl + bound.rec, rtol=1e-6)


def test_parameter_count_matches_the_reference():
    model = models.FSVAE()  # SVHN, v2 networks, z = 10
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 3_602_092


# ------------------------------------------------------------------------------------- SVHN data
def test_mat_loader_reads_the_official_layout(svhn_dir):
    folder, files = svhn_dir
    images, labels, _ = svhn.read_mat(folder / "train_32x32.mat")
    x, y = files["train"]
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[7], x[:, :, :, 7])  # image n is X[:, :, :, n]
    np.testing.assert_array_equal(labels, y.ravel() % 10)
    assert labels.dtype == np.int64 and set(labels) == set(range(10)) and labels[9] == 0
    np.testing.assert_array_equal(images, x.transpose(3, 0, 1, 2))  # every image, transposed
    unit = data.to_unit_interval(images)
    assert unit.shape == (40, 3072) and unit.min() == 0.0 and unit.max() == 1.0
    np.testing.assert_array_equal(unit[0].reshape(32, 32, 3), x[:, :, :, 0] / np.float32(255))


def test_uncompressed_mat_files_load_too(tmp_path):
    x, _ = write_svhn_mat(tmp_path / "test_32x32.mat", 5, compress=False)
    images, _, _ = svhn.read_mat(tmp_path / "test_32x32.mat")
    np.testing.assert_array_equal(images[4], x[..., 4])


def test_load_svhn_takes_extra_for_training_as_the_reference(svhn_dir):
    folder, files = svhn_dir
    dataset = svhn.load_svhn(folder)
    assert dataset.train_images.shape == (50, 32, 32, 3)  # extra
    assert dataset.test_images.shape == (30, 32, 32, 3)
    assert dataset.image_shape == (32, 32, 3)
    assert svhn.load_svhn(folder, train_split="train").train_images.shape == (40, 32, 32, 3)


def test_missing_svhn_says_where_to_put_the_files(tmp_path):
    with pytest.raises(data.DataError) as e:
        svhn.load_svhn(tmp_path)
    message = str(e.value)
    assert "extra_32x32.mat" in message and "test_32x32.mat" in message and str(tmp_path) in message
    assert svhn.URL in message and "--dataset=tfds:svhn_cropped" in message


def test_corrupt_and_wrong_mat_files_are_clear_errors(tmp_path):
    write_svhn_mat(tmp_path / "test_32x32.mat", 20)
    raw = (tmp_path / "test_32x32.mat").read_bytes()
    (tmp_path / "cut.mat").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(data.DataError, match="truncated or corrupt"):
        svhn.read_mat(tmp_path / "cut.mat")
    scipy.io.savemat(tmp_path / "other.mat", {"images": np.zeros((2, 2))})
    with pytest.raises(data.DataError, match="not an SVHN one"):
        svhn.read_mat(tmp_path / "other.mat")
    scipy.io.savemat(tmp_path / "small.mat", {"X": np.zeros((28, 28, 3, 2), np.uint8),
                                              "y": np.ones((2, 1), np.uint8)})
    with pytest.raises(data.DataError, match=r"X must be uint8 of shape \(32, 32, 3, N\)"):
        svhn.read_mat(tmp_path / "small.mat")
    scipy.io.savemat(tmp_path / "labels.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8),
                                               "y": np.array([[0], [11]], np.uint8)})
    with pytest.raises(data.DataError, match=r"labels must lie in 1..10"):
        svhn.read_mat(tmp_path / "labels.mat")


def test_tfds_source_uses_svhn_cropped():
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=6):
        dataset = sources.load("tfds:svhn_cropped")
    assert dataset.train_images.shape == (6, 32, 32, 3) and dataset.train_images.dtype == np.uint8
    assert dataset.test_labels.shape == (6,) and dataset.test_labels.max() <= 9


def test_large_arrays_stream_the_same_batches_without_a_copy(monkeypatch, svhn_dir):
    folder, _ = svhn_dir
    images, labels, _ = svhn.read_mat(folder / "extra_32x32.mat")
    small = list(data.train_dataset(images, 16, 0, binarized=False, labels=labels).take(5))
    monkeypatch.setattr(data, "_MAX_CONSTANT_BYTES", 0)  # gather from the NumPy view instead
    large = list(data.train_dataset(images, 16, 0, binarized=False, labels=labels).take(5))
    for (xs, ys), (xl, yl) in zip(small, large):
        np.testing.assert_array_equal(xs, xl)
        np.testing.assert_array_equal(ys, yl)
    assert small[3][0].shape == (2, 3072)  # the last partial batch of the 50 images


# ------------------------------------------------------------------------------------ the model
def test_fit_lowers_the_loss_and_rejects_bad_labels():
    import keras
    rng = np.random.RandomState(0)
    y = np.arange(200) % 10
    patterns = (rng.rand(10, 784) > 0.5).astype(np.float32)  # one pattern per class, plus noise
    x = np.clip(patterns[y] * 0.8 + 0.2 * rng.rand(200, 784), 0, 1).astype(np.float32)
    model = models.FSVAE(image_shape=(28, 28, 1), z_dim=2, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(x, y, batch_size=50, epochs=8, verbose=0, shuffle=False)
    assert history.history["nelbo"][-1] < history.history["nelbo"][0] - 50
    with pytest.raises(ValueError, match=r"labels must lie in 0..9, got min 5 and max 14"):
        model.fit(x, y + 5, batch_size=50, epochs=1, verbose=0)  # arrays: checked before
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Labels must lie in 0..9"):
        model.fit(tf.data.Dataset.from_tensor_slices((x, y + 5)).batch(50), verbose=0)
    with pytest.raises(ValueError, match=r"\(images, labels\) pairs"):
        model.fit(x, batch_size=50, epochs=1, verbose=0)


_LOAD = r"""
import json, sys
import numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
s = loaded.sample(y=tf.constant([3, 0, 9]), seed=tf.constant([5, 6]))
d = loaded.decode(z=tf.ones([2, 10]), y=tf.constant([1, 2]))
g = loaded.class_grid(columns=tf.constant(4), seed=tf.constant([0, 1]))
x = tf.fill([2, 3072], 0.5)
b = loaded.negative_elbo(x=x, y=tf.constant([1, 2]), seed=tf.constant([0, 0]))
print("RESULT" + json.dumps({"sample": s["image"].numpy().tolist(),
                             "decode": d["mean"].numpy().tolist(),
                             "grid": g["image"].numpy().tolist(),
                             "nelbo": b["nelbo"].numpy().tolist()}))
"""


def test_export_and_reload_draws_a_class_conditional_grid(tmp_path):
    model = models.FSVAE(seed=2)
    export.export(model, tmp_path / "m")
    proc = subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    np.testing.assert_allclose(out["sample"], model.sample_labels([3, 0, 9], seed=[5, 6])["image"],
                               atol=1e-5)
    np.testing.assert_allclose(out["decode"], model.decode(tf.ones([2, 10]), [1, 2]).mean(),
                               atol=1e-5)
    grid = np.asarray(out["grid"])
    assert grid.shape == (40, 3072) and grid.min() >= 0 and grid.max() <= 1
    np.testing.assert_allclose(grid, model.class_grid(4, [0, 1])["image"], atol=1e-5)
    x = tf.fill([2, 3072], 0.5)
    np.testing.assert_allclose(out["nelbo"], model.negative_elbo(x, [1, 2], seed=[0, 0]).value,
                               rtol=1e-5)
    assert export.read_metadata(tmp_path / "m")["image_shape"] == [32, 32, 3]


def test_class_grid_shares_one_z_per_column():
    model = models.FSVAE(image_shape=(28, 28, 1), seed=0)
    z_seed, _ = tf.unstack(tf.random.experimental.stateless_split(tf.constant([4, 2]), 2))
    z = model.prior().sample(3, seed=z_seed)
    grid = model.class_grid(3, [4, 2])["mean"].numpy()
    for label in (0, 7):
        np.testing.assert_allclose(grid[label * 3:(label + 1) * 3],
                                   model.decode(z, [label] * 3).mean(), atol=1e-5)


# ------------------------------------------------------------------------------------- bin/train
def test_bin_train_fsvae_on_official_svhn_files(svhn_dir, tmp_path):
    folder, _ = svhn_dir
    proc = run_tool("train", "--model=fsvae", f"--data_dir={folder}", "--iter_max=6",
                    "--iter_save=3", "--log_every=3", "--batch_size=16", "--check_steps=5",
                    f"--out_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "model=fsvae_dataset=svhn_run=0000"
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["steps"] == 6
    assert result["full_test"]["nelbo"]["n"] == 30 and result["sample_check"]["n"] == 1000
    assert "Conditional samples recognised" in proc.stdout
    grid = tf.io.decode_png((run_dir / "samples.png").read_bytes())
    assert tuple(grid.shape) == (320, 640, 3)
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == \
        ["step=0000003.png", "step=0000006.png"]
    metadata = export.read_metadata(run_dir / "savedmodel")
    assert metadata["kind"] == "fsvae" and "class_grid" in metadata["signatures"]
    png = tmp_path / "grid.png"
    proc = run_tool("sample", f"--model_dir={run_dir / 'savedmodel'}", f"--out={png}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    grid = grid.numpy().astype(int)
    # bin/sample draws bin/train's grid from the SavedModel (up to a grey level of rounding).
    assert np.abs(tf.io.decode_png(png.read_bytes()).numpy() - grid).max() <= 1
    out = tmp_path / "eval.json"
    proc = run_tool("evaluate", f"--model_dir={run_dir / 'savedmodel'}", f"--data_dir={folder}",
                    "--check_steps=5", f"--out={out}", f"--pictures_dir={tmp_path / 'pictures'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(out.read_text())
    assert fresh["kind"] == "fsvae" and fresh["sample_check"]["n"] == 1000
    for name in ("nelbo", "niwae_100"):  # the same seeds as bin/train's evaluation
        np.testing.assert_allclose(fresh["full_test"][name]["mean"],
                                   result["full_test"][name]["mean"], rtol=1e-4)
    pictures = {p.name: tf.io.decode_png(p.read_bytes()).numpy() for p in
                (tmp_path / "pictures").iterdir()}
    assert sorted(pictures) == ["curves.png", "latent.png", "reconstructions.png", "samples.png"]
    assert np.abs(pictures["samples.png"] - grid).max() <= 1
    assert pictures["reconstructions.png"].shape == (6 * 32, 10 * 32, 3)


def test_bin_train_names_missing_svhn_files_and_folders(tmp_path):
    proc = run_tool("train", "--model=vae", "--dataset=svhn", f"--data_dir={tmp_path}",
                    f"--out_dir={tmp_path}")
    assert proc.returncode == 2 and "SVHN data not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_tool("train", "--model=fsvae", f"--data_dir={tmp_path / 'nowhere'}",
                    f"--out_dir={tmp_path}")
    assert proc.returncode == 2
    assert "nowhere does not exist" in proc.stderr and "Traceback" not in proc.stderr
