"""What a new user meets first: a quiet start, Keras conventions, clear output."""

import os
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
PY_WARNING = "/x/y.py:57: DeprecationWarning: distutils Version classes are deprecated.\n"


@pytest.mark.parametrize("level, gpu_driver, expected", [
    (2, False, OTHER_ERROR + PY_WARNING),                  # the tools' default, CPU-only
    (2, True, CUINIT + OTHER_ERROR + PY_WARNING),          # with a GPU driver, CUDA errors stay
    (1, False, WARN + OTHER_ERROR + PY_WARNING),
    (3, True, PY_WARNING),
    (0, False, NOTICE + INFO + WARN + CUINIT + OTHER_ERROR + PY_WARNING),
])
def test_start_up_lines_are_filtered_as_tf_cpp_min_log_level_asks(level, gpu_driver, expected):
    text = NOTICE + INFO + WARN + CUINIT + OTHER_ERROR + PY_WARNING
    assert quiet.filter_lines(text, level, gpu_driver) == expected


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
