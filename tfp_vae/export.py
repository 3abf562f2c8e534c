"""SavedModel export with ``keras.export.ExportArchive``.

The archive tracks the model's variables and holds one endpoint per signature of
``model.export_endpoints()``. The result loads with ``tf.saved_model.load`` in a process that never
imports tfp_vae, and runs under TensorFlow's session-based loader (``saved_model_cli run``, TF
Serving), which a plain ``tf.Module`` around a Keras 3 model does not. A small JSON file in
``assets.extra/`` records what the model is, for tools that need to know (image shape, kind).
"""

import functools
import json
import math
import os
import shutil

from tfp_vae import __version__, files, registry
from tfp_vae.errors import NotAModelError  # noqa: F401  (re-exported: export.NotAModelError)

METADATA = os.path.join("assets.extra", "tfp_vae.json")


def export(model, path, data=None):
    """Writes ``model`` as a SavedModel at ``path``, atomically (a crash leaves the old one).

    ``data`` (a dict, e.g. :func:`tfp_vae.train.data_identity`) records what the model was
    trained on, so that ``bin/evaluate`` finds its test set by default."""
    import keras  # Here, so that read_metadata (used by bin/sample) needs no Keras.
    archive = keras.export.ExportArchive()
    archive.track(model)
    limits = input_limits(model)
    for name, (fn, signature) in model.export_endpoints().items():
        archive.add_endpoint(name, _check_inputs(name, fn, signature, limits),
                             input_signature=signature)
    path = _replaceable(path)
    files.remove_stale(path)  # what an export killed before this one left
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        archive.write_out(tmp, verbose=False)
    except Exception as e:  # noqa: BLE001  e.g. a full disk (TF raises its own error types)
        shutil.rmtree(tmp, ignore_errors=True)  # leave no half-written folder behind
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise files.WriteError(f"could not write the SavedModel to {path} ({first}); the "
                               f"previous one, if any, is untouched. Free disk space (or fix the "
                               f"folder's permissions) and export again.") from None
    metadata = {"kind": registry.kind_of(type(model)), "config": model.get_config(),
                "image_shape": list(model.image_shape), "latent_dim": model.z_dim,
                "picture_keys": list(model.picture_keys),
                "likelihood": model.likelihood,
                "num_classes": getattr(model, "num_classes", 0), "data": data or {},
                "tfp_vae_version": __version__,
                "signatures": sorted(model.export_endpoints())}
    files.write_bytes_atomic(os.path.join(tmp, METADATA), json.dumps(metadata, indent=1).encode())
    return files.replace_dir_atomic(tmp, path)






def _replaceable(path):
    """``path`` (``~`` expanded), checked to be missing, an empty folder or a SavedModel: an
    export replaces only what an export wrote."""
    path = os.path.expanduser(os.fspath(path))
    if os.path.lexists(path):
        if not os.path.isdir(path):
            raise files.WriteError(f"{path} exists and is not a folder; export to a new folder "
                                   f"or to an older SavedModel's.")
        if os.listdir(path) and not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise files.WriteError(f"{path} is a folder that holds no SavedModel; export to a "
                                   f"new folder (nothing was replaced).")
    return path


def read_metadata(path):
    """The metadata of an exported model (``kind``, ``config``, ``image_shape``, ...), checked.

    Raises NotAModelError, naming the folder and what is wrong, if it is not a SavedModel written
    by tfp_vae, or its metadata is damaged or of a kind this version does not know."""
    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise NotAModelError(f"{path} is not a SavedModel folder (no saved_model.pb); pass the "
                             f"savedmodel/ folder of a run, e.g. runs/<run name>/savedmodel.")
    try:
        with open(os.path.join(path, METADATA)) as f:
            metadata = json.load(f)
    except (OSError, ValueError):
        raise NotAModelError(f"{path} is a SavedModel but not one exported by tfp_vae (no "
                             f"readable {METADATA}).") from None
    problem = _metadata_problem(metadata)
    if problem:
        raise NotAModelError(f"{path}: its {METADATA} is damaged ({problem}); export the model "
                             f"again (bin/train writes runs/<run>/savedmodel).")
    return metadata


def _metadata_problem(metadata):
    if not isinstance(metadata, dict):
        return f"it holds a {type(metadata).__name__}, not a description of the model"
    missing = [k for k in ("kind", "config", "image_shape", "signatures") if k not in metadata]
    if missing:
        return f"no {', '.join(missing)}"
    if metadata["kind"] not in registry.KINDS:
        return f"kind {metadata['kind']!r} is not one of {', '.join(registry.KINDS)}"
    shape = metadata["image_shape"]
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(d, int) and d > 0 for d in shape)):
        return f"image_shape {shape!r} is not [height, width, channels]"
    if not isinstance(metadata["signatures"], list) or "sample" not in metadata["signatures"]:
        return "its list of signatures is missing 'sample'"
    return None


def load(path):
    """``(loaded, metadata)``: the SavedModel at ``path`` (``tf.saved_model.load``) and its
    checked metadata. Raises NotAModelError, naming the folder, if it cannot be loaded (a
    truncated or damaged ``saved_model.pb``, missing or damaged variables) or lacks a signature
    its metadata lists."""
    import tensorflow as tf  # Here, so that read_metadata stays light.
    metadata = read_metadata(path)
    try:
        loaded = tf.saved_model.load(os.fspath(path))
    except Exception as e:  # noqa: BLE001  TF raises many types for damaged SavedModels.
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise NotAModelError(f"{path} cannot be loaded as a SavedModel ({type(e).__name__}: "
                             f"{first}): its saved_model.pb or variables/ are damaged or "
                             f"incomplete; export the model again.") from None
    lacking = [name for name in metadata["signatures"] if not hasattr(loaded, name)]
    if lacking:
        raise NotAModelError(f"{path} lacks the functions {', '.join(lacking)} that its "
                             f"metadata lists; export the model again.")
    conditional = hasattr(loaded, "class_grid")
    if conditional != (registry.get(metadata["kind"]).task != "unsupervised"):
        raise NotAModelError(f"{path}: its metadata says it is a {metadata['kind']}, but its "
                             f"functions are another kind's; export the model again.")
    width = _input_width(loaded)
    pixels = math.prod(metadata["image_shape"])
    if width is not None and width != pixels:
        raise NotAModelError(f"{path}: its metadata gives images of {metadata['image_shape']} "
                             f"({pixels} values), but the model takes {width}; export the model "
                             f"again.")
    return loaded, metadata


def _input_width(loaded):
    """The width of the ``x`` input of the loaded model's ``encode`` signature, if it has one."""
    fn = getattr(loaded, "signatures", {}).get("encode")
    if fn is None:
        return None
    spec = fn.structured_input_signature[1].get("x")
    return None if spec is None or spec.shape.rank != 2 else spec.shape[-1]


def picture_keys(metadata):
    """``(sample key, mean key)``: the output fields of a loaded model's ``sample`` and
    ``decode`` that picture a draw and a mean (exports older than the field: the Bernoulli ones)."""
    return tuple(metadata.get("picture_keys", ("x", "probs")))


def num_classes(metadata):
    """The classes of a conditional model's export (10 in exports older than the field)."""
    return int(metadata.get("num_classes") or metadata.get("config", {}).get("num_classes", 10))


def likelihood(metadata):
    """The likelihood of an export (older exports: the FSVAE's Gaussian, else Bernoulli)."""
    return metadata.get("likelihood") or ("gaussian" if metadata["kind"] == "fsvae"
                                          else "bernoulli")


# Largest m of the negative_iwae signatures (memory is bounded by chunks; time is not) and the
# most picture values (rows x pixels) one call may ask for (1 GiB of float32).
MAX_IWAE_SAMPLES = 1_000_000
MAX_PICTURE_VALUES = 1 << 28


def input_limits(model):
    """The range every named input of the model's signatures must lie in: images in [0, 1] (no
    NaN or Inf), labels among the classes, components among the prior's, m and the number of
    draws positive and within what can be computed or held."""
    rows = max(1, MAX_PICTURE_VALUES // model.x_dim)
    limits = {"x": (0.0, 1.0), "m": (1, MAX_IWAE_SAMPLES), "n": (1, rows), "u": (0.0, 1.0)}
    if hasattr(model, "num_classes"):
        limits["y"] = (0, model.num_classes - 1)
        limits["columns"] = (1, max(1, rows // model.num_classes))
    if hasattr(model, "k"):
        limits["components"] = (0, model.k - 1)
    return limits


def _check_inputs(name, fn, signature, limits):
    """``fn`` with run-time checks that every input has the shape of its ``TensorSpec`` and
    lies in its range of ``limits`` (:func:`input_limits`).

    A signature's shape is checked when a loaded function is called as an attribute, but not by
    ``loaded.signatures[...]`` or TensorFlow's session loader (TF Serving), where a wrong shape
    would fail deep inside a matmul; no loader checks values, and a label outside the classes
    would silently give an all-zero one-hot. Each check names the signature and the input.
    """
    import tensorflow as tf  # Here, so that read_metadata (used by bin/sample) stays light.

    @functools.wraps(fn)
    def checked(*args):
        checks = []
        for spec, value in zip(signature, args):
            want = ", ".join("batch" if d is None else str(d) for d in spec.shape)
            message = (f"{name}: input {spec.name} must have shape ({want}); got a different "
                       f"shape (shape given below).")
            shape = tf.shape(value)
            known = [(i, d) for i, d in enumerate(spec.shape) if d is not None]
            if known:
                ok = tf.reduce_all(tf.stack([tf.equal(shape[i], d) for i, d in known]))
                checks.append(tf.debugging.Assert(ok, [message, shape]))
            if spec.name in limits:
                low, high = limits[spec.name]
                inside = tf.logical_and(tf.reduce_all(value >= low), tf.reduce_all(value <= high))
                checks.append(tf.debugging.Assert(inside, [
                    f"{name}: input {spec.name} must lie in [{low}, {high}]"
                    + (" (no NaN or Inf)" if spec.dtype.is_floating else "")
                    + "; got values from", tf.reduce_min(value), "to", tf.reduce_max(value)]))
            elif spec.dtype.is_floating:  # latents and noise: any finite value
                checks.append(tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(value)), [
                    f"{name}: input {spec.name} must be finite (no NaN or Inf)"]))
        checks += _joint_checks(name, signature, args, limits)
        with tf.control_dependencies(checks):
            return fn(*args)
    return checked


def _joint_checks(name, signature, args, limits):
    """The checks across inputs: batched inputs of one batch size (x and its labels y), and
    the pictures of ``n`` draws per label or component within the output cap."""
    import tensorflow as tf
    named = {spec.name: value for spec, value in zip(signature, args)}
    batched = [(spec.name, value) for spec, value in zip(signature, args)
               if spec.shape.rank and spec.shape[0] is None]
    checks = []
    if "n" not in named and len(batched) > 1:
        sizes = tf.stack([tf.shape(value)[0] for _, value in batched])
        checks.append(tf.debugging.Assert(tf.reduce_all(tf.equal(sizes, sizes[0])), [
            f"{name}: inputs {' and '.join(k for k, _ in batched)} must have one batch size; "
            f"got", sizes]))
    vector = next((k for k in ("y", "components") if k in named), None)
    if "n" in named and vector:
        rows = tf.cast(named["n"], tf.int64) * tf.cast(tf.size(named[vector]), tf.int64)
        most = limits["n"][1]
        checks.append(tf.debugging.Assert(rows <= most, [
            f"{name}: n x len({vector}) pictures must be at most {most} (1 GiB); got", rows]))
    return checks
