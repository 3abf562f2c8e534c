"""SavedModel export: a fresh process without tfp_vae, and TensorFlow's session loader."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

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
    assert out["signatures"] == ["decode", "encode", "generate", "negative_elbo",
                                 "negative_iwae", "sample", "serving_default"]
    np.testing.assert_array_equal(out["sample_x"], model.sample(6, seed=[3, 4])["x"])
    np.testing.assert_allclose(out["nelbo"], model.negative_elbo(x, seed=[3, 4]).value, rtol=1e-5)
    np.testing.assert_allclose(out["niwae"], model.negative_iwae(x, 50, seed=[3, 4]).value,
                               rtol=1e-5)
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
    assert ("Cannot feed value of shape (2, 100) for Tensor encode_x:0, "
            "which has shape (None, 784)") in proc.stderr


# ------------------------------------------------------------------------------ ONNX, Keras
DETERMINISTIC = ("encode", "decode", "generate", "classify", "pseudo_inputs")


def _feeds(spec, model, rng):
    """Valid inputs for a signature's input ``spec``, by name."""
    n = 5
    shape = [n if d is None else d for d in spec.shape]
    if spec.name in ("y",):
        return rng.integers(0, model.num_classes, n).astype(np.int32)
    if spec.name == "components":
        return rng.integers(0, model.k, n).astype(np.int32)
    if spec.name in ("x", "u"):
        return rng.random(shape).astype(np.float32)
    return rng.normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("kind", ["vae", "gmvae", "vampprior", "ssvae", "fsvae", "beta_vae",
                                  "two_layer_vae"])
def test_every_deterministic_signature_runs_in_onnxruntime_as_in_tensorflow(kind, tmp_path):
    """tf2onnx converts each deterministic signature (generate takes its noise as an input) and
    onnxruntime gives TensorFlow's outputs within 1e-4."""
    import onnxruntime
    import tf2onnx
    extra = {"ssvae": {"num_classes": 3}, "fsvae": {"num_classes": 3}, "gmvae": {"k": 4},
             "vampprior": {"pseudo_inputs": 4}}.get(kind, {})
    model = models.get(kind)(z_dim=2, image_shape=(4, 4, 1), **extra)
    export.export(model, tmp_path / "m")
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    rng = np.random.default_rng(0)
    names = [name for name in DETERMINISTIC if name in model.export_endpoints()]
    assert "generate" in names and "encode" in names
    for name in names:
        signature = loaded.signatures[name]
        inputs = sorted(signature.structured_input_signature[1].items())
        keys = tuple(key for key, _ in inputs)
        specs = [tf.TensorSpec(spec.shape, spec.dtype, name=key) for key, spec in inputs]
        function = tf.function(lambda *args, sig=signature, keys=keys: sig(
            **dict(zip(keys, args))), input_signature=specs)
        onnx_model, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=17)
        session = onnxruntime.InferenceSession(onnx_model.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        feeds = {s.name: _feeds(s, model, rng) for s in specs}
        want = signature(**{k: tf.constant(v) for k, v in feeds.items()})
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
        for key, value in want.items():
            match = next(k for k in got if k.split(":")[0].endswith(key))
            np.testing.assert_allclose(got[match], value.numpy(), atol=1e-4, err_msg=name)


def _tfsm_value(name, spec, rng):
    """A valid input ``name`` of ``spec`` for the tiny models below (3 classes, 4 components)."""
    shape = [5 if d is None else d for d in spec.shape]
    if name in ("y", "components"):
        return rng.integers(0, 3, shape).astype(np.int32)
    if name == "seed":
        return np.array([1, 2], np.int32)
    if name in ("n", "m", "columns"):
        return np.int32(3)
    return rng.random(shape).astype(np.float32)


# Every signature of the VAE, SSVAE and FSVAE, and the GMVAE's and VampPrior's own (their other
# signatures are the VAE's, input for input): every signature name and input list there is.
_TFSM_ONLY = {"gmvae": {"sample_components"}, "vampprior": {"pseudo_inputs"}}


@pytest.mark.parametrize("kind", ["vae", "gmvae", "vampprior", "ssvae", "fsvae", "two_layer_vae"])
def test_keras_tfsm_layer_calls_every_signature(kind, tmp_path):
    """keras.layers.TFSMLayer calls every signature with the first input positional and the
    others by name (docs/manual.md): inside a functional model when the first input is a batch
    (constants for the rest, such as a seed), directly otherwise; outputs equal the SavedModel's
    own."""
    import keras
    extra = {"ssvae": {"num_classes": 3}, "fsvae": {"num_classes": 3}, "gmvae": {"k": 4},
             "vampprior": {"pseudo_inputs": 4}}.get(kind, {})
    export.export(models.get(kind)(z_dim=2, image_shape=(4, 4, 1), **extra), tmp_path / "m")
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    rng = np.random.default_rng(0)
    names = sorted(set(loaded.signatures) - {"serving_default"})
    assert len(names) >= 6
    for name in sorted(_TFSM_ONLY.get(kind, names)):
        specs = loaded.signatures[name].structured_input_signature[1]
        order = getattr(loaded, name).function_spec.fullargspec.args
        values = {k: _tfsm_value(k, specs[k], rng) for k in order}
        want = loaded.signatures[name](**{k: tf.constant(v) for k, v in values.items()})
        layer = keras.layers.TFSMLayer(str(tmp_path / "m"), call_endpoint=name)
        first, rest = order[0], order[1:]
        if specs[first].shape.rank and specs[first].shape[0] is None:
            inputs = {k: keras.Input(specs[k].shape[1:], dtype=specs[k].dtype.name, name=k)
                      for k in order if specs[k].shape.rank and specs[k].shape[0] is None}
            outputs = layer(inputs[first], **{k: inputs.get(k, tf.constant(values[k]))
                                              for k in rest})
            got = keras.Model(inputs, outputs)({k: values[k] for k in inputs})
        else:  # sample(n, seed), class_grid(columns, seed): nothing batched to build a model on
            got = layer(tf.constant(values[first]), **{k: tf.constant(values[k]) for k in rest})
        assert sorted(got) == sorted(want), name
        for key, value in want.items():
            np.testing.assert_allclose(np.asarray(got[key]), value.numpy(), atol=1e-5,
                                       err_msg=f"{name}: {key}")
