"""The Python examples of README.md and docs/ run as they stand (with fewer training steps).

Each ```python block is run in a fresh process, in a scratch folder that sees the repository's
``savedmodels/``. Only the training length is shortened: ``epochs=N`` -> 2 and
``steps_per_epoch=N`` -> 3.
"""

import re
import subprocess
import sys

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [block for page in PAGES
          for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)]


def _shortened(code):
    code = re.sub(r"\bepochs=\d+", "epochs=2", code)
    return re.sub(r"\bsteps_per_epoch=\d+", "steps_per_epoch=3", code)


def test_readme_has_the_examples_it_promises():
    text = "\n".join(BLOCKS)
    for needle in ("models.VAE(", "models.SSVAE(", "models.FSVAE(", "loss_and_terms",
                   "tf.saved_model.load", "callbacks="):
        assert needle in text, needle


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path):
    code = _shortened(BLOCKS[index])
    if "tfp_vae" not in code.replace("# no tfp_vae", ""):
        # The SavedModel example promises to need neither tfp_vae nor TFP: check it.
        code += ("\nimport sys\nassert 'tfp_vae' not in sys.modules\n"
                 "assert 'tensorflow_probability' not in sys.modules\n")
    (tmp_path / "savedmodels").symlink_to(ROOT / "savedmodels")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"README example {index}:\n{code}\n{proc.stderr[-3000:]}"
    # Examples run clean: no Python warning (from our code, Keras or TFP). TensorFlow's own
    # C++ start-up lines in a user's script are TensorFlow's (bin/ tools filter them).
    noisy = [line for line in proc.stderr.splitlines() if re.search(r"\w+Warning: ", line)]
    assert not noisy, f"README example {index} printed:\n" + "\n".join(noisy)
