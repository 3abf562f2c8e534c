"""Loading SavedModels (tfp_vae.export.load, tfp_vae.saved): damaged or mismatched folders are
one clear error, signatures refuse inputs they cannot mean, a failed export leaves nothing."""

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import run_tool
from tfp_vae.errors import NotAModelError, WriteError


def test_a_full_disk_while_exporting_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import keras
    from tfp_vae import export, models

    def failing(self, path, **kwargs):
        os.makedirs(os.path.join(path, "variables"))
        raise OSError(28, "No space left on device")
    # Keras 3 hands out a backend subclass of ExportArchive: patch the class it instantiates.
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", failing)
    with pytest.raises(WriteError, match="could not write the SavedModel to .*No space left"):
        export.export(models.VAE(), tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tfp_vae import export, models
    path = tmp_path_factory.mktemp("exported") / "vae"
    export.export(models.VAE(z_dim=2), path)
    return path


def _damaged(exported, tmp_path, damage):
    path = tmp_path / "m"
    shutil.copytree(exported, path)
    meta = path / "assets.extra" / "tfp_vae.json"
    if damage == "truncated pb":
        raw = (path / "saved_model.pb").read_bytes()
        (path / "saved_model.pb").write_bytes(raw[:len(raw) // 3])
    elif damage == "random pb":
        (path / "saved_model.pb").write_bytes(os.urandom(5000))
    elif damage == "no variables":
        shutil.rmtree(path / "variables")
    elif damage == "truncated variables":
        data = next((path / "variables").glob("variables.data-*"))
        data.write_bytes(data.read_bytes()[:100])
    elif damage in ("{}", "[]"):
        meta.write_text(damage)
    elif damage == "other kind":
        meta.write_text(meta.read_text().replace('"kind": "vae"', '"kind": "ssvae"'))
    elif damage == "other shape":
        metadata = json.loads(meta.read_text())
        meta.write_text(json.dumps({**metadata, "image_shape": [32, 32, 1]}))
    return path


@pytest.mark.parametrize("damage, message", [
    ("truncated pb", "cannot be loaded as a SavedModel"),
    ("random pb", "cannot be loaded as a SavedModel"),
    ("no variables", "cannot be loaded as a SavedModel"),
    ("truncated variables", "cannot be loaded as a SavedModel"),
    ("{}", "is damaged (no kind, config, image_shape, signatures)"),
    ("[]", "is damaged (it holds a list"),
    ("other kind", "says it is a ssvae, but its functions are another kind's"),
    ("other shape", "gives images of [32, 32, 1] (1024 values), but the model takes 784"),
])
def test_damaged_or_mismatched_savedmodels_are_one_clear_error(exported, tmp_path, damage,
                                                              message):
    from tfp_vae import export
    path = _damaged(exported, tmp_path, damage)
    with pytest.raises(NotAModelError, match=re.escape(message)):
        export.load(path)


def test_bin_sample_on_a_damaged_savedmodel_exits_2(exported, tmp_path):
    path = _damaged(exported, tmp_path, "truncated pb")
    proc = run_tool("sample", f"--model_dir={path}", f"--out={tmp_path / 'g.png'}")
    assert proc.returncode == 2 and "cannot be loaded as a SavedModel" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def conditional_export(tmp_path_factory):
    from tfp_vae import export, models
    root = tmp_path_factory.mktemp("signatures")
    export.export(models.FSVAE(z_dim=2, image_shape=(4, 4, 1), num_classes=3), root / "fsvae")
    export.export(models.GMVAE(z_dim=2, k=5, image_shape=(4, 4, 1)), root / "gmvae")
    export.export(models.SSVAE(z_dim=2, image_shape=(4, 4, 1), num_classes=3), root / "ssvae")
    return root


@pytest.mark.parametrize("kind, signature, inputs, message", [
    ("fsvae", "sample", {"y": [0, 3]}, "sample: input y must lie in [0, 2]"),
    ("fsvae", "sample", {"y": [-1]}, "sample: input y must lie in [0, 2]"),
    ("fsvae", "negative_elbo", {"x": "nan", "y": [0]}, "negative_elbo: input x must lie in [0.0, "
                                                        "1.0] (no NaN or Inf)"),
    ("fsvae", "negative_iwae", {"x": "inf", "y": [0], "m": 5}, "input x must lie in"),
    ("fsvae", "negative_iwae", {"x": 2.0, "y": [0], "m": 5}, "input x must lie in"),
    ("fsvae", "negative_iwae", {"x": 0.5, "y": [0], "m": 0}, "negative_iwae: input m must lie in "
                                                             "[1, 1000000]"),
    ("fsvae", "class_grid", {"columns": 10 ** 9}, "class_grid: input columns must lie in"),
    ("gmvae", "sample", {"n": 10 ** 9}, "sample: input n must lie in [1, 16777216]"),
    ("gmvae", "sample", {"n": -2}, "sample: input n must lie in"),
    ("gmvae", "sample_components", {"components": [5], "n": 1}, "input components must lie in "
                                                                "[0, 4]"),
    ("fsvae", "decode", {"z": "nan", "y": [0]}, "decode: input z must be finite (no NaN or Inf)"),
    ("fsvae", "generate", {"eps": "inf", "y": [0]}, "generate: input eps must be finite"),
    ("fsvae", "negative_elbo", {"x": 0.5, "y": [0, 1]}, "negative_elbo: inputs x and y must have "
                                                        "one batch size"),
    ("fsvae", "encode", {"x": 0.5, "y": [0, 1]}, "encode: inputs x and y must have one batch"),
    ("ssvae", "sample", {"n": 10 ** 7, "y": [0, 1, 2]}, "sample: n x len(y) pictures must be at "
                                                         "most 16777216 (1 GiB)"),
    ("gmvae", "sample_components", {"components": [0, 1, 2, 3, 4], "n": 4_000_000},
     "sample_components: n x len(components) pictures must be at most 16777216"),
])
def test_signatures_refuse_inputs_they_cannot_mean(conditional_export, kind, signature, inputs,
                                                   message):
    import tensorflow as tf
    loaded = tf.saved_model.load(str(conditional_export / kind))
    takes = loaded.signatures[signature].structured_input_signature[1]
    values = {"seed": tf.constant([0, 1])} if "seed" in takes else {}
    for key, value in inputs.items():
        width = {"x": 16, "z": 2, "eps": 2}.get(key)
        values[key] = tf.fill([1, width], float(value)) if width else tf.constant(value, tf.int32)
    for call in (getattr(loaded, signature), loaded.signatures[signature]):  # both ways in
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
            call(**values)


def test_saved_model_cli_refuses_a_label_outside_the_classes(conditional_export, tmp_path):
    import numpy as np
    np.save(tmp_path / "y.npy", np.array([7], np.int32))
    np.save(tmp_path / "seed.npy", np.array([1, 2], np.int32))
    proc = subprocess.run(
        ["saved_model_cli", "run", "--dir", str(conditional_export / "fsvae"), "--tag_set",
         "serve", "--signature_def", "sample", "--inputs",
         f"y={tmp_path / 'y.npy'};seed={tmp_path / 'seed.npy'}"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "sample: input y must lie in [0, 2]" in proc.stderr
