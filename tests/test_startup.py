"""The tools' fixed costs: no AutoGraph rewriting of tfp_vae's code when a model trains and is
evaluated, and a finished tool ends without the interpreter's teardown (but with its exit
handlers)."""

import importlib.metadata
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.autograph.impl import api as autograph_api

from conftest import ROOT
from tfp_vae import data, evaluate, models


@pytest.fixture
def converted(monkeypatch):
    """The names of the functions AutoGraph rewrites while the test runs."""
    names = []
    original = autograph_api._convert_actual

    def spy(entity, program_ctx):
        names.append(f"{getattr(entity, '__module__', '')}.{getattr(entity, '__qualname__', '')}")
        return original(entity, program_ctx)
    monkeypatch.setattr(autograph_api, "_convert_actual", spy)
    return names


@pytest.mark.parametrize("kind", ["vae", "ssvae"])
def test_training_and_the_bounds_are_traced_without_autograph(kind, converted):
    model = models.get(kind)(z_dim=2)
    model.compile(optimizer="adam", steps_per_execution=2)
    rng = np.random.default_rng(0)
    images = (rng.random((40, 784)) * 255).astype(np.uint8)
    labels = np.arange(40) % 10
    if kind == "ssvae":
        stream = data.semisupervised_dataset(images, labels, images[:10] / 255.0, labels[:10],
                                             8, seed=0)
    else:
        stream = data.train_dataset(images, 8, seed=0)
    model.fit(stream, steps_per_epoch=2, epochs=1, verbose=0)
    elbo, iwae = evaluate.model_bounds(model)
    x = tf.constant(images[:4] / 255.0, tf.float32)
    iwae(x, tf.constant(3), tf.constant([0, 0]))
    elbo(x, tf.constant([0, 0]))
    assert int(model.optimizer.iterations.numpy()) == 2  # it did train
    assert [name for name in converted if name.startswith("tfp_vae")] == []


_TOOL = """
import atexit, os
from tfp_vae import cli

class Teardown:
    def __del__(self):
        print("teardown ran", flush=True)

keep = Teardown()  # collected only by the interpreter's teardown
atexit.register(lambda: print("exit handler ran", flush=True))

def main():
    print("main ran")  # left in stdout's buffer: exit_now must flush it
    return int(os.environ["EXIT_CODE"])

cli.run(main)
"""


@pytest.mark.parametrize("code, profiled, cluster, teardown", [
    (0, False, False, False),  # success: straight out, after the exit handlers
    (2, False, False, True),   # failure: the normal exit, teardown included
    (0, True, False, True),    # under a profiler: the normal exit, so that the profile is written
    (0, False, True, True)])   # a multi-worker cluster's worker: the normal shutdown
def test_a_finished_tool_skips_the_teardown_but_not_the_exit_handlers(code, profiled, cluster,
                                                                      teardown, tmp_path):
    script = tmp_path / "tool.py"
    script.write_text(textwrap.dedent(_TOOL))
    command = [sys.executable] + (["-m", "cProfile", "-o", str(tmp_path / "p.prof")]
                                  if profiled else []) + [str(script)]
    env = {"PYTHONPATH": str(ROOT), "EXIT_CODE": str(code)}
    if cluster:
        env["TF_CONFIG"] = '{"cluster": {"worker": ["localhost:1"]}, "task": {"index": 0}}'
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == code, proc.stderr
    assert "main ran" in proc.stdout and "exit handler ran" in proc.stdout
    assert ("teardown ran" in proc.stdout) is teardown
    assert (tmp_path / "p.prof").is_file() is profiled


def test_a_finished_tool_whose_reader_has_gone_exits_without_a_traceback(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text("from tfp_vae import cli\n"
                      "cli.run(lambda: print('x' * 100))\n")  # buffered until exit_now flushes
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(ROOT)})
    proc.stdout.close()  # as `tool | head -0` does
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


# ------------------------------------------------------------------- deferred imports (the tools)
@pytest.fixture
def modules(tmp_path, monkeypatch):
    """A folder of throwaway modules that log their execution to ``lazylog.ran``; the names they
    add to ``sys.modules``, and the finder ``defer`` adds to ``sys.meta_path``, are removed
    afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    (tmp_path / "lazylog.py").write_text("ran = []\n")
    log = "import lazylog\nlazylog.ran.append(__name__)\n"
    (tmp_path / "lazypkg").mkdir()
    (tmp_path / "lazypkg" / "__init__.py").write_text(log)
    (tmp_path / "lazypkg" / "child.py").write_text(log + "VALUE = 7\n")
    (tmp_path / "lazypkg" / "other.py").write_text(log)
    (tmp_path / "lazypkg" / "broken.py").write_text(log + "1 / 0\n")
    (tmp_path / "lazytop.py").write_text(log + "VALUE = 8\n")
    (tmp_path / "lazyslow.py").write_text(log + "import time\ntime.sleep(0.3)\nVALUE = 9\n")
    before = set(sys.modules)
    import lazylog
    yield lazylog.ran
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_deferred_module_runs_on_its_first_attribute_not_on_import(modules):
    from tfp_vae import lazy_imports
    assert lazy_imports.defer("lazytop") and lazy_imports.defer("lazypkg.child")
    import lazypkg.child as child  # as Keras imports matplotlib.pyplot
    import lazytop
    from lazypkg import child as same  # as Keras imports matplotlib.patches
    assert modules == [] and same is child and child.__name__ == "lazypkg.child"
    assert lazytop.VALUE == 8 and modules == ["lazytop"]
    assert child.VALUE == 7 and modules == ["lazytop", "lazypkg", "lazypkg.child"]  # package 1st
    assert type(child) is type(sys) and sys.modules["lazypkg.child"] is child
    assert not lazy_imports.defer("lazytop")  # imported already
    assert not lazy_imports.defer("lazy_no_such_module")


def test_a_deferred_package_runs_before_a_module_of_it_imported_for_real(modules):
    from tfp_vae import lazy_imports
    assert lazy_imports.defer("lazypkg.child")
    import lazypkg.other  # noqa: F401
    assert modules == ["lazypkg", "lazypkg.other"]


def test_a_deferred_module_that_fails_fails_as_its_import_would(modules):
    from tfp_vae import lazy_imports
    assert lazy_imports.defer("lazypkg.broken")
    from lazypkg import broken
    with pytest.raises(ZeroDivisionError):
        broken.anything
    assert "lazypkg.broken" not in sys.modules and "broken" not in vars(sys.modules["lazypkg"])
    with pytest.raises(ZeroDivisionError):  # a new import runs it again, as after any failure
        from lazypkg import broken  # noqa: F811
    assert modules == ["lazypkg", "lazypkg.broken", "lazypkg.broken"]


def test_a_deferred_module_runs_once_when_two_threads_ask_for_it(modules):
    import threading
    from tfp_vae import lazy_imports
    assert lazy_imports.defer("lazyslow")
    import lazyslow
    values = []
    threads = [threading.Thread(target=lambda: values.append(lazyslow.VALUE)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert values == [9, 9] and modules == ["lazyslow"]


def test_the_tools_import_tensorflow_without_what_keras_imports_for_nothing(tmp_path):
    # An IPython that leaves a mark when it runs (whether or not one is installed here).
    (tmp_path / "fake" / "IPython").mkdir(parents=True)
    mark = tmp_path / "ipython_ran"
    (tmp_path / "fake" / "IPython" / "__init__.py").write_text(
        f"open({str(mark)!r}, 'w').close()\ndef get_ipython():\n    return None\n")
    script = textwrap.dedent(f"""
        import sys
        from tfp_vae import lazy_imports, quiet
        quiet.import_tensorflow()
        import keras, tensorflow_probability as tfp
        from tfp_vae import pictures
        tfp.distributions.Normal(0.0, 1.0).log_prob(0.0)
        print(sorted(n for n in lazy_imports.DEFERRED + ("matplotlib",)
                     if type(sys.modules.get(n)).__name__ == "_Deferred")
              + ["tfp.experimental"] * (type(tfp.experimental).__name__ == "LazyLoader")
              + ["IPython"] * ("IPython" not in sys.modules))
        subset = {{"niwae": {{"1": {{"mean": 90.0, "se": 0.1}}, "10": {{"mean": 89.0, "se": 0.1}}}},
                  "nelbo": {{"mean": 91.0}}}}
        pictures.iwae_against_m(subset, {str(tmp_path / "i.png")!r})
        import matplotlib
        print(type(sys.modules["matplotlib.pyplot"]).__name__, matplotlib.get_backend().lower(),
              "IPython" in sys.modules)
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300,
                          env={"PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path / "fake")])})
    assert proc.returncode == 0, proc.stderr
    deferred, after = proc.stdout.splitlines()[-2:]
    for name in ("matplotlib", "matplotlib.pyplot", "matplotlib.patches", "scipy.linalg",
                 "scipy.ndimage", "tfp.experimental", "IPython"):
        assert repr(name) in deferred  # scipy: the test extra installs it
    assert after == "module agg False" and (tmp_path / "i.png").stat().st_size > 1000
    assert not mark.exists()  # Keras went without it, and so did matplotlib's figure


def test_the_installed_ml_dtypes_is_one_that_imports_fast():
    """setup.py holds ml_dtypes below 0.7: 0.7.0 takes most of a second to import (every
    ``import tensorflow`` pays it; docs/performance.md)."""
    version = tuple(int(part) for part in importlib.metadata.version("ml_dtypes").split(".")[:2])
    assert version < (0, 7)


def test_keras_hidden_while_tensorflow_is_imported_can_be_imported_after():
    # bin/sample's import: TensorFlow without Keras; a later `import keras` (or tf.keras) works.
    code = ("from tfp_vae import lazy_imports\n"
            "import sys\n"
            "tf = lazy_imports.import_tensorflow(tfp=False, keras=False)\n"
            "print('keras' in sys.modules, tf.constant(2.0).numpy())\n"
            "import keras\n"
            "print(keras.ops.add(1.0, 2.0).numpy(), tf.keras is keras or tf.keras.__name__)\n"
            "import tensorflow.keras\n"
            "from tensorflow.keras import layers\n"
            "print(None in tf.__path__, layers.Dense.__module__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.split("\n")
    assert lines[0] == "False 2.0"
    assert lines[1].startswith("3.0 ")
    assert lines[2].startswith("False keras.")  # tf.keras's package path intact


def test_hiding_keras_is_refused_when_tfp_will_import_it():
    from tfp_vae import lazy_imports
    before = list(sys.meta_path)
    with pytest.raises(ValueError, match="keras=False needs tfp=False"):
        lazy_imports.import_tensorflow(tfp=True, keras=False)
    assert sys.meta_path == before  # refused before touching the import system
