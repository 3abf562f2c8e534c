"""tfp_vae.train (bin/train) on a user's own data, end to end: every model the data allows,
bin/evaluate, bin/sample and the SavedModel, on an IDX dataset of 32x32 images with 3 unequal
classes, a Keras .npz of colour images, a folder of PNGs and TFDS (mock data); and the bad
inputs of a run."""

import csv
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import makedata
from conftest import QUIET, ROOT, RUN, run_tool
from tfp_vae import errors, export, train
from tfp_vae.errors import ConfigError


FAST = ["--iter_max=4", "--iter_save=2", "--log_every=2", "--eval_repeats=2",
        "--iwae_samples=1,3", "--batch_size=8"]


CHECK = ["--check_steps=3"]  # the FSVAE's own setting


def _png(path):
    return tf.io.decode_png(path.read_bytes()).numpy()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    idx, _ = makedata.idx_folder(root / "shapes")
    npz, _ = makedata.npz_file(root / "colour.npz")
    png, _ = makedata.png_folder(root / "pets")
    return {"idx": idx, "npz": npz, "png": png, "root": root}


def _train(folders, source, model, *flags):
    out = folders["root"] / "runs"
    proc = run_tool("train", f"--model={model}", f"--data_dir={folders[source]}",
                    f"--out_dir={out}", *FAST, *(CHECK if model == "fsvae" else []), *flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = next(line.split("run folder: ")[1] for line in proc.stdout.splitlines()
               if line.startswith("run folder: "))
    return pathlib.Path(run), proc


def test_idx_dataset_of_32x32_images_and_3_classes(folders, tmp_path):
    run_dir, proc = _train(folders, "idx", "vae")
    assert run_dir.name == "model=vae_dataset=shapes_z=10_run=0000"
    assert "shapes: 60 training and 25 test images of 32x32x1, 3 classes" in proc.stdout
    result = json.loads((run_dir / "evaluation.json").read_text())
    # The subset rule: the first ceil(100 / 3) = 34 test images of each class (all 25 here).
    assert result["subset"]["images"] == 25 and result["subset"]["rule"] == "first per class"
    assert result["full_test"]["nelbo"]["n"] == 25
    assert _png(run_dir / "samples.png").shape == (320, 640, 1)
    assert _png(run_dir / "reconstructions.png").shape == (4 * 32, 10 * 32, 1)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["likelihood"] == "bernoulli" and config["data_source"] == str(folders["idx"])
    metadata = export.read_metadata(run_dir / "savedmodel")
    assert metadata["image_shape"] == [32, 32, 1] and metadata["likelihood"] == "bernoulli"
    # bin/evaluate finds the training data by itself and reproduces the run's numbers.
    out = tmp_path / "eval.json"
    proc = run_tool("evaluate", f"--model_dir={run_dir / 'savedmodel'}", "--eval_repeats=2",
                    "--iwae_samples=1,3", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(out.read_text())
    for name in ("nelbo", "kl", "rec"):
        assert fresh["subset"][name]["mean"] == pytest.approx(result["subset"][name]["mean"],
                                                              rel=1e-5)
    assert fresh["full_test"]["niwae_100"]["mean"] == pytest.approx(
        result["full_test"]["niwae_100"]["mean"], rel=1e-5)
    # On a test set of another image shape: one clear error.
    proc = run_tool("evaluate", f"--model_dir={run_dir / 'savedmodel'}",
                    f"--data_dir={folders['png']}")
    assert proc.returncode == 2 and "models 32x32x1 images, but pets holds 20x20x1" in proc.stderr
    png = tmp_path / "grid.png"
    proc = run_tool("sample", f"--model_dir={run_dir / 'savedmodel'}", f"--out={png}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _png(png).shape == (320, 640, 1)


def test_ssvae_and_fsvae_on_the_idx_dataset_with_conv_networks(folders):
    run_dir, _ = _train(folders, "idx", "ssvae", "--labels_per_class=5", "--arch=conv")
    assert run_dir.name == "model=ssvae_dataset=shapes_gw=1_cw=100_arch=conv_labels=5_run=0000"
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["classifier"]["n"] == 25 and np.shape(result["classifier"]["confusion"]) == (3, 3)
    assert _png(run_dir / "samples.png").shape == (3 * 32, 20 * 32, 1)  # a row per class
    run_dir, _ = _train(folders, "idx", "fsvae")
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["sample_check"]["n"] == 300 and np.shape(result["sample_check"]["confusion"]) \
        == (3, 3)


def test_colour_npz_gets_the_gaussian_likelihood(folders, tmp_path):
    run_dir, _ = _train(folders, "npz", "gmvae", "--k=5", "--arch=conv")
    assert run_dir.name == "model=gmvae_dataset=colour_z=10_k=5_arch=conv_run=0000"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["likelihood"] == "gaussian"
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["binarized"] is False and result["subset"]["images"] == 18
    # 10 x 20 images of 16x16, each drawn 32x32 with a 2-pixel line between (images.tile)
    assert _png(run_dir / "samples.png").shape == (10 * 34 - 2, 20 * 34 - 2, 3)
    loaded = tf.saved_model.load(str(run_dir / "savedmodel"))
    drawn = loaded.sample(n=tf.constant(4), seed=tf.constant([0, 1]))
    assert drawn["image"].shape == (4, 768) and float(tf.reduce_max(drawn["image"])) <= 1.0
    run_dir, _ = _train(folders, "npz", "fsvae", "--likelihood=bernoulli")
    assert run_dir.name == "model=fsvae_dataset=colour_likelihood=bernoulli_run=0000"
    png = tmp_path / "grid.png"
    proc = run_tool("sample", f"--model_dir={run_dir / 'savedmodel'}", f"--out={png}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _png(png).shape == (3 * 34 - 2, 20 * 34 - 2, 3)  # 20 per class by default


def test_png_folder_for_the_vae_and_ssvae(folders):
    run_dir, _ = _train(folders, "png", "vae")
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["subset"]["images"] == 4 and result["full_test"]["nelbo"]["n"] == 4
    run_dir, _ = _train(folders, "png", "ssvae", "--labels_per_class=3")
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["classifier"]["n"] == 4


_MOCKED = """
import runpy, sys
import tensorflow_datasets as tfds
sys.argv = sys.argv[1:]
with tfds.testing.mock_data(num_examples=100):  # enough for every class in training
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        sys.exit(e.code)
"""


def test_tfds_dataset_end_to_end_with_mock_data(tmp_path):
    def mocked(tool, *args):
        return subprocess.run([sys.executable, "-c", _MOCKED, str(ROOT / "bin" / tool), *args],
                              capture_output=True, text=True, timeout=600)
    proc = mocked("train", "--model=fsvae", "--dataset=tfds:fashion_mnist",
                  f"--out_dir={tmp_path}", *FAST, *CHECK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "model=fsvae_dataset=tfds-fashion_mnist_run=0000"
    assert json.loads((run_dir / "evaluation.json").read_text())["full_test"]["nelbo"]["n"] == 100
    proc = mocked("evaluate", f"--model_dir={run_dir / 'savedmodel'}", "--check_steps=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Conditional samples recognised" in proc.stdout


@pytest.mark.parametrize("layout, message", [
    ("empty", "holds no data that tfp_vae recognises"),
    ("mixed", "images of different sizes"),
    ("nokeys", "has no x_train and no x_test array (found: images)"),
    ("unlabelled", "the ssvae needs labels"),
])
def test_bad_data_is_one_error_line_and_exit_code_2(folders, tmp_path, layout, message):
    from PIL import Image
    model, path = "vae", tmp_path / layout
    if layout == "empty":
        path.mkdir()
    elif layout == "mixed":
        makedata.png_folder(path, counts=(12, 12))
        Image.new("L", (7, 7)).save(path / "cat" / "small.png")
    elif layout == "nokeys":
        np.savez(tmp_path / "nokeys.npz", images=np.zeros((3, 4, 4), np.uint8))
        path = tmp_path / "nokeys.npz"
    else:
        makedata.npz_file(tmp_path / "u.npz", y_train=None, y_test=None)
        model, path = "ssvae", tmp_path / "u.npz"
    if layout != "empty":  # the library's error, in process
        with pytest.raises(errors.Error, match=re.escape(message)):
            train.run(train.Settings(model=model, data_dir=str(path), out_dir=str(tmp_path)))
        return
    # and once as bin/train shows every such error: one line, exit code 2
    proc = run_tool("train", f"--model={model}", f"--data_dir={path}", f"--out_dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: " in proc.stderr and message in proc.stderr and "Traceback" not in proc.stderr


def test_resuming_on_other_data_is_refused_naming_both(tmp_path):
    folder, _ = makedata.idx_folder(tmp_path / "a" / "shapes")
    settings = dict(model="vae", data_dir=str(folder), out_dir=str(tmp_path / "runs"),
                    iter_save=2, log_every=2, eval_repeats=1, iwae_samples=(1,),
                    full_test=False, export=False, verbose=0)
    train.run(train.Settings(iter_max=2, **settings))
    makedata.write_idx(folder / "train-images-idx3-ubyte.gz",
                       makedata.images((30, 20, 10), (32, 32), seed=9)[0])  # other content
    with pytest.raises(ConfigError, match="data sha256 .* but this command asks for data sha256"):
        train.run(train.Settings(iter_max=4, **settings))
    other, _ = makedata.idx_folder(tmp_path / "b" / "shapes")  # same name, another folder
    with pytest.raises(ConfigError, match=f"data source {tmp_path / 'a' / 'shapes'}.* asks for "
                                          f"data source {tmp_path / 'b' / 'shapes'}"):
        train.run(train.Settings(iter_max=4, **{**settings, "data_dir": str(other)}))


def test_evaluating_on_data_changed_since_training_is_refused_unless_named(tmp_path):
    from tfp_vae import evaluate_saved
    from tfp_vae.errors import DataError
    path, _ = makedata.npz_file(tmp_path / "d.npz")
    result = train.run(train.Settings(model="vae", data_dir=str(path), out_dir=str(tmp_path),
                                      iter_max=2, iter_save=2, log_every=2, eval_repeats=1,
                                      iwae_samples=(1,), full_test=False, verbose=0))
    model = tmp_path / result["run"] / "savedmodel"
    options = evaluate_saved.Options(eval_repeats=1, iwae_samples=(1,), full_test=False)
    assert evaluate_saved.run(str(model), options)["data"]["sha256"]
    makedata.npz_file(path, train_counts=(16, 16, 17))  # another file at the same place
    with pytest.raises(DataError, match="has changed since .* was trained on it"):
        evaluate_saved.run(str(model), options)
    named = evaluate_saved.Options(data_dir=str(path), eval_repeats=1, iwae_samples=(1,),
                                   full_test=False)
    assert evaluate_saved.run(str(model), named)["data"]["source"] == str(path)


def test_pixel_max_names_the_data_and_is_kept_for_the_evaluation(tmp_path):
    """(The note on dim data is the loader's: tests/test_sources.py.)"""
    from tfp_vae import evaluate_saved
    x = np.random.default_rng(0).integers(0, 17, (48, 8, 8)).astype(np.uint8)  # digits: 0..16
    path, _ = makedata.npz_file(tmp_path / "digits.npz", x_train=x, x_test=x[:18],
                                y_test=np.arange(18) % 3)
    result = train.run(train.Settings(model="vae", data_dir=str(path), pixel_max=16,
                                      out_dir=str(tmp_path), iter_max=2, iter_save=2,
                                      log_every=2, eval_repeats=1, iwae_samples=(1,),
                                      full_test=False, verbose=0))
    assert "pixel_max" not in result["run"]  # the scale names the data, not the run
    options = evaluate_saved.Options(eval_repeats=1, iwae_samples=(1,), full_test=False)
    evaluated = evaluate_saved.run(str(tmp_path / result["run"] / "savedmodel"), options)
    config = json.loads((tmp_path / result["run"] / "config.json").read_text())
    assert evaluated["data"]["sha256"] == config["data_sha256"] and config["pixel_max"] == 16


# The (source, model) pairs not run through bin/train above, in process (the same train.run
# that bin/train calls), each exported and its SavedModel sampled: every model on every source.
IN_PROCESS = [("idx", "gmvae"), ("npz", "vae"), ("npz", "ssvae"), ("png", "gmvae"),
              ("png", "fsvae"), ("tfds", "vae"), ("tfds", "gmvae"), ("tfds", "ssvae")]


@pytest.mark.parametrize("source, model", IN_PROCESS)
def test_every_model_trains_evaluates_and_exports_on_every_source(folders, tmp_path, source,
                                                                  model):
    import contextlib
    import tensorflow_datasets as tfds
    where = {"dataset": "tfds:mnist"} if source == "tfds" else {"data_dir": str(folders[source])}
    own = {"fsvae": dict(check_steps=2), "gmvae": dict(k=5),
           "ssvae": dict(labels_per_class=1 if source == "tfds" else 3)}.get(model, {})
    config = train.Settings(model=model, out_dir=str(tmp_path), iter_max=2, iter_save=2,
                            log_every=2, eval_repeats=1, iwae_samples=(1, 2), batch_size=8,
                            verbose=0, **own, **where)
    # Mock data draws random labels: enough examples that every class has one for the SSVAE.
    mock = tfds.testing.mock_data(num_examples=200 if model == "ssvae" else 24) \
        if source == "tfds" else contextlib.nullcontext()
    with mock:
        result = train.run(config)
    run_dir = tmp_path / result["run"]
    metadata = export.read_metadata(run_dir / "savedmodel")
    shape = tuple(metadata["image_shape"])
    loaded = tf.saved_model.load(str(run_dir / "savedmodel"))
    key = metadata["picture_keys"][0]
    if "class_grid" in metadata["signatures"]:
        drawn = loaded.class_grid(columns=tf.constant(2), seed=tf.constant([0, 0]))[key]
        assert drawn.shape == (2 * metadata["num_classes"], np.prod(shape))
    else:
        drawn = loaded.sample(n=tf.constant(3), seed=tf.constant([0, 0]))[key]
        assert drawn.shape == (3, np.prod(shape))
    assert _png(run_dir / "samples.png").shape[2] == shape[2]
    assert ("subset" in result) == (model in ("vae", "gmvae"))


def test_a_run_with_kl_warmup_trains_on_less_than_its_reported_bound(tmp_path):
    config = train.Settings(model="vae", iter_max=6, iter_save=6, log_every=3, kl_warmup=1000,
                            out_dir=str(tmp_path), **QUIET)
    train.run(config)
    run_dir = tmp_path / RUN
    recorded = json.loads((run_dir / "config.json").read_text())
    assert recorded["kl_warmup"] == 1000 and recorded["free_bits"] == 0
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    # the KL weight is at most 0.005: the loss is about the reconstruction term alone
    assert all(float(r["loss"]) < float(r["nelbo"]) - 0.9 * float(r["kl"]) for r in rows)
    with pytest.raises(ConfigError, match="started with --kl_warmup=1000"):
        train.run(train.Settings(model="vae", iter_max=9, iter_save=3, log_every=3,
                                 kl_warmup=500, out_dir=str(tmp_path), **QUIET))


def test_the_recorded_commit_is_the_one_the_run_started_on(tmp_path, monkeypatch):
    """A commit made while a run trains is not the run's code: evaluation.json names the commit
    of the run's start."""
    folder, _ = makedata.idx_folder(tmp_path / "shapes")
    monkeypatch.setattr(train, "source_commit", lambda: "bad0000" if list(
        tmp_path.glob("model=*/checkpoints/ckpt-2*")) else "c0ffee1")  # committed mid-run
    result = train.run(train.Settings(model="vae", data_dir=str(folder), out_dir=str(tmp_path),
                                      iter_max=2, iter_save=2, log_every=2, eval_repeats=1,
                                      iwae_samples=(1,), full_test=False, export=False,
                                      verbose=0))
    assert result["commit"] == "c0ffee1"
