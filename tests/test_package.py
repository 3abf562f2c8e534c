"""The package as installed: a light import, every module reachable, pretrained models after a
plain `pip install .`."""

import os
import shutil
import subprocess
import sys

from conftest import ROOT


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


def test_pretrained_models_are_reachable_after_a_plain_install(tmp_path):
    """`pip install .` (not editable) into a fresh environment: tfp_vae.pretrained finds the
    copies under <prefix>/share, and bin/sample --model_dir=pretrained:vae runs from anywhere."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=300)
    python = venv / "bin" / "python"
    # The environment a user has: no PYTHONPATH pointing at a checkout (e.g. the clone under test).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    source = tmp_path / "source"  # pip builds in the tree it installs: keep the clone clean
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", "runs", ".pytest_cache", ".hypothesis"))
    # Built as pip builds for a user: in an isolated environment with what pyproject.toml's
    # [build-system] asks for, whatever this interpreter happens to have installed.
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                              str(source)],
                             capture_output=True, text=True, timeout=600, env=env)
    assert install.returncode == 0, install.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import tfp_vae.pretrained as p; "
                            "print(p.__file__); print(p.path('gmvae'))"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    module, found = where.stdout.split()
    assert module.startswith(str(venv)) and found == str(venv / "share" / "tfp_vae" /
                                                          "savedmodels" / "gmvae")
    proc = subprocess.run([str(venv / "bin" / "sample"), "--model_dir=pretrained:vae",
                           f"--out={tmp_path / 'grid.png'}"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0 and (tmp_path / "grid.png").is_file(), proc.stderr[-3000:]
