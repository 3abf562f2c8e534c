"""What a new user meets first: a quiet start, Keras conventions, clear output."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from tfp_vae import quiet

NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
INFO = ("I0000 00:00:1796014919.853191    3540 cpu_feature_guard.cc:227] This TensorFlow binary "
        "is optimized.\nTo enable the following instructions: AVX2 FMA, rebuild TensorFlow.\n")
WARN = "W0000 00:00:1796014919.853191    3540 something.cc:1] a warning\n"
CUINIT = ("E0000 00:00:1796014923.643321    3540 cuda_platform.cc:52] failed call to cuInit: "
          "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
OTHER_ERROR = "E0000 00:00:1796014923.643321    3540 gpu_device.cc:2] out of memory\n"
SPEED = ("E0000 00:00:1796017234.2 31411 util.cc:131] oneDNN supports DT_INT32 only on "
         "platforms with AVX-512. Falling back to the default Eigen-based implementation.\n")
PY_WARNING = "/x/y.py:57: DeprecationWarning: distutils Version classes are deprecated.\n"
PLAIN = "a line of ours, after a dropped record\n"


@pytest.mark.parametrize("level, gpu_driver, expected", [
    (2, False, OTHER_ERROR + PY_WARNING + PLAIN),           # the tools' default, CPU-only
    (2, True, CUINIT + OTHER_ERROR + PY_WARNING + PLAIN),   # with a GPU driver, CUDA errors stay
    (1, False, WARN + OTHER_ERROR + PY_WARNING + PLAIN),
    (3, True, PY_WARNING + PLAIN),
    (0, False, NOTICE + INFO + WARN + CUINIT + SPEED + OTHER_ERROR + PY_WARNING + INFO + PLAIN),
])
def test_start_up_lines_are_filtered_as_tf_cpp_min_log_level_asks(level, gpu_driver, expected):
    text = NOTICE + INFO + WARN + CUINIT + SPEED + OTHER_ERROR + PY_WARNING + INFO + PLAIN
    assert quiet.filter_lines(text, level, gpu_driver) == expected


def test_a_hard_crash_in_tensorflows_import_still_shows_its_last_words(tmp_path):
    """The filter is its own process: what TensorFlow prints just before it aborts reaches the
    user (a fake tensorflow package that logs a fatal check and aborts)."""
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import os, sys\n"
        "sys.stderr.write('I0000 00:00:1.0  1 x.cc:1] chatter\\n')\n"
        "sys.stderr.write('F0000 00:00:1.0  1 x.cc:2] Check failed: boom\\n')\n"
        "sys.stderr.flush()\n"
        "os.abort()\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "fake"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(ROOT / "bin" / "sample"),
                           "--model_dir=pretrained:vae", f"--out={tmp_path / 'g.png'}"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    # Its last words first, its chatter dropped; then Python's own report of the abort (absl's
    # app.run enables faulthandler, and the tools import TensorFlow once their flags are checked).
    assert proc.stderr.startswith("F0000 00:00:1.0  1 x.cc:2] Check failed: boom\n")
    assert "chatter" not in proc.stderr


def _sample(tmp_path, level=None):
    """bin/sample on the pretrained VAE with TF_CPP_MIN_LOG_LEVEL=level (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = str(level)
    return subprocess.run([sys.executable, str(ROOT / "bin" / "sample"),
                           f"--model_dir={ROOT / 'savedmodels' / 'vae'}",
                           f"--out={tmp_path / 'grid.png'}"], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.skipif(quiet.nvidia_driver_present(), reason="the cuInit line is real with a GPU")
def test_a_tool_on_a_cpu_only_machine_prints_no_start_up_chatter(tmp_path):
    """The tools' default (TF_CPP_MIN_LOG_LEVEL=2): nothing on stderr at all; with level 0 the
    lines TensorFlow prints are there (so the quiet is the filter's doing)."""
    quiet_run = _sample(tmp_path)
    assert quiet_run.returncode == 0 and quiet_run.stderr == "", quiet_run.stderr
    loud = _sample(tmp_path, level=0)
    assert loud.returncode == 0 and "cuInit" in loud.stderr


def test_import_is_light_and_submodules_load_on_first_use():
    code = ("import sys, tfp_vae\n"
            "light = 'tensorflow' not in sys.modules\n"
            "print(light, tfp_vae.models.VAE.__name__, tfp_vae.sources.load.__name__,\n"
            "      'models' in dir(tfp_vae))\n"
            "try:\n"
            "    tfp_vae.nope\n"
            "except AttributeError as e:\n"
            "    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.stdout.splitlines() == ["True VAE load True",
                                        "module 'tfp_vae' has no attribute 'nope'"], proc.stderr


def test_every_module_of_the_package_is_reachable_as_an_attribute():
    import tfp_vae
    modules = {p.stem for p in (ROOT / "tfp_vae").glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in (ROOT / "tfp_vae").iterdir() if (p / "__init__.py").exists()}
    assert modules == set(tfp_vae._SUBMODULES)


# ------------------------------------------------------------------------ the .keras format
def _stream(kind):
    """A tiny training stream of the model's kind (images 4x4, 3 classes)."""
    import numpy as np
    from tfp_vae import data
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (40, 16)).astype(np.uint8)
    labels = np.arange(40) % 3
    if kind == "ssvae":
        return data.semisupervised_dataset(images, labels, images[:6], labels[:6], 8, seed=0)
    return data.train_dataset(images, 8, seed=0, binarized=kind != "fsvae",
                              labels=labels if kind == "fsvae" else None)


def _build(kind, strategy):
    import keras
    from tfp_vae import models, optimizers
    kwargs = {"z_dim": 2, "image_shape": (4, 4, 1), "seed": 3}
    if kind in ("ssvae", "fsvae"):
        kwargs["num_classes"] = 3
    if kind == "gmvae":
        kwargs["k"] = 4
    if kind == "vampprior":
        kwargs.update(pseudo_inputs=4, objective="iwae", train_samples=3)
    with strategy.scope():
        model = models.get(kind)(**kwargs)
        model.compile(optimizer=optimizers.FusedAdam(1e-3))
    return model


@pytest.mark.parametrize("kind", ["vae", "gmvae", "ssvae", "fsvae", "vampprior"])
@pytest.mark.parametrize("where", ["one device", "two replicas"])
def test_keras_format_round_trip_keeps_weights_optimizer_and_training(kind, where, tmp_path):
    """model.save("m.keras") and keras.models.load_model: the same class and settings, weights,
    optimizer state and step; fit continues from there exactly as the original does."""
    import keras
    import numpy as np
    import tensorflow as tf
    import conftest
    strategy = conftest.two_cpu_strategy() if where == "two replicas" else \
        tf.distribute.get_strategy()
    model = _build(kind, strategy)
    model.fit(_stream(kind), epochs=1, steps_per_epoch=3, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    with strategy.scope():
        loaded = keras.models.load_model(path)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    assert int(loaded.optimizer.iterations.numpy()) == 3
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for m in (model, loaded):
        m.fit(_stream(kind), epochs=1, steps_per_epoch=2, verbose=0)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_summary_names_the_distributions_keras_cannot_show():
    from tfp_vae import models
    lines = []
    models.GMVAE(z_dim=3, k=4, image_shape=(4, 4, 1)).summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Total params: " in text
    assert "p(z)            uniform mixture of 4 learned diagonal Gaussians over z (3)" in text
    assert "p(x | z)        Bernoulli (logits) over x (4x4x1), mlp decoder" in text
    assert "objective       negative ELBO, Monte-Carlo KL" in text


def test_fit_on_a_dataset_gives_no_shuffle_warning():
    import warnings
    import tensorflow as tf
    model = _build("vae", tf.distribute.get_strategy())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(_stream("vae"), epochs=1, steps_per_epoch=2, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]


def test_pretrained_models_are_reachable_after_a_plain_install(tmp_path):
    """`pip install .` (not editable) into a fresh environment: tfp_vae.pretrained finds the
    copies under <prefix>/share, and bin/sample --model_dir=pretrained:vae runs from anywhere."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=300)
    python = venv / "bin" / "python"
    source = tmp_path / "source"  # pip builds in the tree it installs: keep the clone clean
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", "runs", ".pytest_cache", ".hypothesis"))
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                              "--no-build-isolation", "--no-index", str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import tfp_vae.pretrained as p; "
                            "print(p.__file__); print(p.path('gmvae'))"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    module, found = where.stdout.split()
    assert module.startswith(str(venv)) and found == str(venv / "share" / "tfp_vae" /
                                                          "savedmodels" / "gmvae")
    proc = subprocess.run([str(venv / "bin" / "sample"), "--model_dir=pretrained:vae",
                           f"--out={tmp_path / 'grid.png'}"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "grid.png").is_file(), proc.stderr[-3000:]
