"""bin/train and bin/sample end to end, on the bundled MNIST with a few steps."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, run_tool

FAST = ["--eval_repeats=2", "--iwae_samples=1,10", "--nofull_test", "--log_every=10"]


def _png_shape(path):
    return tuple(tf.io.decode_png(open(path, "rb").read()).shape)


def _png(path):
    return tf.io.decode_png(open(path, "rb").read()).numpy()


def _tensorboard(folder):
    """{tag: [(step, value)]} of every TensorBoard event file under ``folder`` (images as the
    decoded picture, scalars as floats)."""
    events = {}
    for path in folder.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                value = tf.make_ndarray(v.tensor)
                if v.metadata.plugin_data.plugin_name == "images":  # [width, height, png...]
                    value = tf.io.decode_png(value[2]).numpy()
                events.setdefault(v.tag, []).append((event.step, value))
    return events


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = run_tool("train", "--model=vae", "--iter_max=20", "--iter_save=10", f"--out_dir={out}",
                    *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "model=vae_z=10_run=0000", proc


def test_train_writes_the_whole_run(trained):
    run_dir, proc = trained
    assert "Reference protocol" in proc.stdout and "-IWAE-10" in proc.stdout
    assert f"run folder: {run_dir}" in proc.stdout  # where it writes, first
    progress = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in progress[:2]] == ["step 10/20", "step 20/20"]
    assert "val_loss " in progress[0] and progress[0].endswith(" ms/step)")
    assert f"results in {run_dir}:\n  evaluation.json, samples.png, curves.png" in proc.stdout
    assert f"bin/sample --model_dir={run_dir / 'savedmodel'}" in proc.stdout
    assert f"tensorboard --logdir {run_dir / 'logs'}" in proc.stdout
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["steps"] == 20
    assert 1 < result["startup_seconds"] < 120  # launch to the end of the first call
    assert re.fullmatch(r"[0-9a-f]{7,}", result["commit"])  # the tests run in a git checkout
    assert set(result["subset"]["niwae"]) == {"1", "10"}
    assert 100 < result["subset"]["nelbo"]["mean"] < 600
    assert _png_shape(run_dir / "samples.png") == (280, 560, 1)
    for plot in ("curves.png", "iwae.png", "latent.png"):  # matplotlib plots, 640 x 400
        assert _png_shape(run_dir / plot)[:2] == (400, 640), plot
        assert tf.io.decode_png((run_dir / plot).read_bytes()).numpy().std() > 10, plot
    assert _png_shape(run_dir / "reconstructions.png") == (6 * 28, 10 * 28, 1)  # 3 pairs of rows
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "vae" and config["z"] == 10 and config["data_name"] == "mnist"
    assert not {"k", "gw", "cw", "check_steps", "labels_per_class", "beta",
                "pseudo_inputs"} & set(config)  # no other kind's hyperparameters
    history = list(csv.DictReader(open(run_dir / "history.csv")))
    assert list(history[0]) == ["step", "kl", "loss", "nelbo", "rec", "val_kl", "val_loss",
                                "val_nelbo", "val_rec"]
    assert [row["step"] for row in history] == ["10", "20"]  # every --log_every steps
    assert all(100 < float(row["val_nelbo"]) < 600 for row in history)  # no "NA" columns
    assert (run_dir / "savedmodel" / "saved_model.pb").is_file()
    board = _tensorboard(run_dir / "logs" / "train")
    held_out = _tensorboard(run_dir / "logs" / "validation")
    assert sorted(board) == sorted(held_out) == ["bound/kl", "bound/nelbo", "bound/rec",
                                                 "objective/loss"]
    assert [step for step, _ in board["bound/nelbo"]] == [10, 20]  # the global step
    assert [float(v) for _, v in held_out["bound/nelbo"]] == \
        pytest.approx([float(row["val_nelbo"]) for row in history])
    samples = _tensorboard(run_dir / "logs" / "samples")["samples/grid"]
    assert [step for step, _ in samples] == [10, 20]  # every --iter_save steps
    np.testing.assert_array_equal(samples[-1][1], _png(run_dir / "samples" / "step=0000020.png"))
    final = _tensorboard(run_dir / "logs" / "evaluation")
    for name in ("curves", "iwae", "latent", "reconstructions"):  # the same pictures
        ((step, picture),) = final[f"evaluation/{name}"]
        assert step == 20
        np.testing.assert_array_equal(picture, _png(run_dir / f"{name}.png"))
    assert "evaluation/samples" not in final  # already there as samples/grid at step 20
    ((_, nelbo),) = final["evaluation/subset/nelbo"]
    assert float(nelbo) == pytest.approx(result["subset"]["nelbo"]["mean"], rel=1e-6)
    ((_, niwae),) = final["evaluation/subset/niwae_10"]
    assert float(niwae) == pytest.approx(result["subset"]["niwae"]["10"]["mean"], rel=1e-6)
    assert not [tag for tag in final if tag.endswith(("seconds", "steps", "per_second"))]
    assert "evaluation/run" in final  # the bookkeeping as one text table
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.index")) == \
        ["ckpt-10.index", "ckpt-20.index"]


def test_train_resumes_from_the_last_checkpoint(trained, tmp_path):
    run_dir, _ = trained
    out = tmp_path / "runs"
    shutil.copytree(run_dir, out / run_dir.name)
    proc = run_tool("train", "--model=vae", "--iter_max=30", "--iter_save=10",
                    f"--out_dir={out}", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout and "ckpt-20" in proc.stdout
    result = json.loads((out / run_dir.name / "evaluation.json").read_text())
    assert result["resumed_from_step"] == 20 and result["steps"] == 30


def test_sample_writes_a_grid_with_tensorflow_only(trained, tmp_path):
    run_dir, _ = trained
    png = tmp_path / "grid.png"
    proc = run_tool("sample", f"--model_dir={run_dir / 'savedmodel'}", "--n=200", f"--out={png}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _png_shape(png) == (280, 560, 1)
    pixels = tf.io.decode_png(png.read_bytes()).numpy()
    assert set(np.unique(pixels)) <= {0, 255} and pixels.mean() > 5  # binary draws, not blank


# At exit (a tool that succeeds ends with tfp_vae.cli.exit_now, which runs the exit handlers):
# which modules the tool loaded.
_IMPORTS = """
import atexit, runpy, sys
sys.argv = sys.argv[1:]
atexit.register(lambda: print("TFP" if "tensorflow_probability" in sys.modules else "noTFP",
                              "MODELS" if "tfp_vae.models" in sys.modules else "noMODELS",
                              "KERAS" if "keras" in sys.modules else "noKERAS"))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_sample_loads_no_keras_no_tfp_no_model_code(trained, tmp_path):
    run_dir, _ = trained
    proc = subprocess.run([sys.executable, "-c", _IMPORTS, str(ROOT / "bin" / "sample"),
                           f"--model_dir={run_dir / 'savedmodel'}", "--n=8",
                           f"--out={tmp_path / 'g.png'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "noTFP noMODELS" in proc.stdout  # (TensorFlow itself imports Keras)
    assert (tmp_path / "g.png").is_file()


def test_train_with_two_mirrored_cpu_replicas(tmp_path):
    proc = run_tool("train", "--model=vae", "--iter_max=10", "--iter_save=10",
                    "--strategy=mirrored", "--cpu_replicas=2", "--noexport",
                    f"--out_dir={tmp_path}", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "model=vae_z=10_run=0000" / "evaluation.json").read_text())
    assert result["steps"] == 10


@pytest.mark.parametrize("args, message", [
    (["--model=nope"], "value should be one of"),
    (["--z=0"], "flag --z=0: 0 is not a positive integer"),
    (["--batch_size=-3"], "flag --batch_size=-3: -3 is not a positive integer"),
    (["--strategy=tpu"], "value should be one of"),
    (["--jit_compile=maybe"], "value should be one of"),
    (["--data_dir=/no/such/folder"], "--data_dir=/no/such/folder does not exist"),
    (["--iter_save=7", "--steps_per_execution=2"], "must be a multiple of --steps_per_execution"),
    (["--cpu_replicas=2"], "need --strategy=mirrored"),
    (["--strategy=mirrored", "--devices=GPU:7"], "which this machine does not have"),
    (["--model=gmvae", "--k=0"], "--k must be a whole number > 0, got 0"),
    (["--model=ssvae", "--gw=-1"], "--gw must be a finite number >= 0, got -1.0"),
    (["--k=3"], "--k is a setting of the gmvae, not of the vae"),
    (["--lr=0"], "--lr must be a finite positive number, got 0.0"),
    (["--strategy=multiworker"], "reads the cluster from the TF_CONFIG environment variable"),
    (["--strategy=mirrored", "--cpu_replicas=2", "--jit_compile=true"],
     "--jit_compile=true fails under MirroredStrategy"),
])
def test_train_refuses_bad_input_with_a_clear_message(tmp_path, args, message, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    proc = run_tool("train", f"--out_dir={tmp_path}", "--iter_max=1", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def _tool_with_a_fake_tensorflow(tmp_path, tool, *args):
    """``bin/<tool>`` with a ``tensorflow`` on the path that leaves a mark when imported and
    fails; returns (process, whether it was imported)."""
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    mark = tmp_path / "tensorflow_imported"
    (fake / "__init__.py").write_text(f"open({str(mark)!r}, 'w').close()\n"
                                      f"raise ImportError('the fake tensorflow of the test')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(ROOT)]),
           "PATH": os.environ.get("PATH", "")}
    proc = subprocess.run([sys.executable, str(ROOT / "bin" / tool), *args], capture_output=True,
                          text=True, env=env, timeout=120, cwd=ROOT)
    return proc, mark.exists()


@pytest.mark.parametrize("tool, args, message", [
    ("train", ["--model=nope"], "value should be one of"),
    ("train", ["--model=ssvae", "--gw=nan"], "--gw must be a finite number"),
    ("train", ["--iwae_samples=abc"], "--iwae_samples must be whole numbers"),
    ("train", ["--iter_save=7", "--steps_per_execution=2"],
     "must be a multiple of --steps_per_execution"),
    ("train", ["--memory_budget=lots"], "--memory_budget"),
    ("train", ["extra"], "unexpected arguments: extra"),
    ("sample", ["--model_dir=savedmodels/vae", "--n=0"], "flag --n=0: 0 is not a positive"),
    ("sample", ["--model_dir=savedmodels/vae", "--out={tmp}"], "is a folder"),
    ("evaluate", ["--model_dir=savedmodels/vae", "--iwae_samples=abc"],
     "--iwae_samples must be whole numbers"),
    ("evaluate", ["--model_dir=pretrained:nope"], "there is no pretrained 'nope'"),
    ("evaluate", ["--model_dir=savedmodels/vae", "--memory_budget=lots"], "--memory_budget"),
    ("evaluate", ["--model_dir=savedmodels/vae", "--dataset=bogus"], "bogus"),
])
def test_tools_answer_a_bad_flag_before_importing_tensorflow(tmp_path, tool, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    if tool == "train":
        args += [f"--out_dir={tmp_path}", "--iter_max=1"]
    proc, imported = _tool_with_a_fake_tensorflow(tmp_path, tool, *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert not imported and "Traceback" not in proc.stderr


@pytest.mark.parametrize("tool, args", [
    ("train", ["--iter_max=1", "--out_dir={tmp}"]),
    ("sample", ["--model_dir=savedmodels/vae", "--out={tmp}/s.png"]),
    ("evaluate", ["--model_dir=savedmodels/vae"]),
])
def test_the_fake_tensorflow_is_what_a_good_command_imports(tmp_path, tool, args):
    # The control of the test above: with good flags each tool does import it (and fails).
    proc, imported = _tool_with_a_fake_tensorflow(tmp_path, tool,
                                                  *[a.format(tmp=tmp_path) for a in args])
    assert imported and proc.returncode != 0


@pytest.mark.parametrize("settings, message", [
    (dict(model="nope"), "unknown model 'nope'"),
    (dict(model="ssvae", objective="iwae"), "the ssvae trains on its ELBO"),
])
def test_settings_are_checked_with_the_kinds_defaults(settings, message):
    from tfp_vae import errors, settings as settings_module
    with pytest.raises(errors.ConfigError, match=re.escape(message)):
        settings_module.Settings(**settings).resolve()


def test_sample_refuses_a_folder_that_is_not_a_model(tmp_path):
    proc = run_tool("sample", f"--model_dir={tmp_path}")
    assert proc.returncode == 2 and "is not a SavedModel folder" in proc.stderr


def test_sample_refuses_an_option_for_another_model_kind(trained, tmp_path):
    run_dir, _ = trained
    proc = run_tool("sample", f"--model_dir={run_dir / 'savedmodel'}", "--components=0,1",
                    f"--out={tmp_path / 'c.png'}")
    assert proc.returncode == 2 and "--components needs a GMVAE" in proc.stderr
    assert "holds a vae" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "c.png").exists()


def test_evaluate_reproduces_the_run_evaluation_from_the_savedmodel(trained, tmp_path):
    run_dir, _ = trained
    out = tmp_path / "eval.json"
    proc = run_tool("evaluate", f"--model_dir={run_dir / 'savedmodel'}", "--eval_repeats=2",
                    "--iwae_samples=1,10", "--nofull_test", f"--out={out}",
                    f"--pictures_dir={tmp_path / 'pictures'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Reference protocol" in proc.stdout and "-IWAE-10" in proc.stdout
    # The pictures of bin/train, drawn again from the SavedModel alone (the curves from the
    # run's history.csv beside it): the same sample grid, the same reconstructions up to one
    # grey level of float rounding.
    pictures = tmp_path / "pictures"
    np.testing.assert_array_equal(_png(pictures / "samples.png"), _png(run_dir / "samples.png"))
    assert np.abs(_png(pictures / "reconstructions.png").astype(int)
                  - _png(run_dir / "reconstructions.png")).max() <= 1
    for plot in ("curves.png", "iwae.png", "latent.png"):
        assert _png_shape(pictures / plot) == _png_shape(run_dir / plot), plot
        assert _png(pictures / plot).std() > 10, plot
    fresh = json.loads(out.read_text())["subset"]
    logged = json.loads((run_dir / "evaluation.json").read_text())["subset"]
    for name in ("nelbo", "kl", "rec"):  # the same seeds: equal up to float32 rounding
        np.testing.assert_allclose(fresh[name]["mean"], logged[name]["mean"], rtol=1e-4)
    for m in ("1", "10"):
        np.testing.assert_allclose(fresh["niwae"][m]["mean"], logged["niwae"][m]["mean"],
                                   rtol=1e-4)


def test_evaluate_refuses_a_folder_that_is_not_a_model(tmp_path):
    proc = run_tool("evaluate", f"--model_dir={tmp_path}")
    assert proc.returncode == 2 and "is not a SavedModel folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sample_refuses_n_that_is_not_a_multiple_of_10_for_a_conditional_model(tmp_path):
    from tfp_vae import export, models
    export.export(models.FSVAE(image_shape=(28, 28, 1)), tmp_path / "m")
    proc = run_tool("sample", f"--model_dir={tmp_path / 'm'}", "--n=15",
                    f"--out={tmp_path / 'g.png'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--n must be a multiple of 10 for the fsvae" in proc.stderr
    assert not (tmp_path / "g.png").exists()


def test_evaluate_draws_curves_only_from_a_run_of_the_same_kind(trained, tmp_path):
    """The curves come from the run folder above a run's savedmodel/ (see the test above); a
    model folder elsewhere whose neighbours belong to another run gets no curves
    (``evaluate_saved.training_history``, which bin/evaluate asks)."""
    from tfp_vae.evaluate_saved import training_history
    run_dir, _ = trained
    assert training_history(run_dir / "savedmodel", "vae") == (str(run_dir / "history.csv"), 10)
    shutil.copytree(run_dir / "savedmodel", tmp_path / "m")
    (tmp_path / "history.csv").write_text((run_dir / "history.csv").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert training_history(tmp_path / "m", "vae") == (None, None)  # not a run's savedmodel/
    (tmp_path / "m" / "history.csv").write_text((run_dir / "history.csv").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "model": "gmvae"}))
    assert training_history(tmp_path / "m", "vae") == (None, None)  # a config of another kind
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    assert training_history(tmp_path / "m", "vae") == (  # beside the model, as in savedmodels/
        str(tmp_path / "m" / "history.csv"), 10)


def test_evaluating_a_finished_run_again_replaces_its_evaluation_board(trained):
    run_dir, _ = trained
    proc = run_tool("train", "--model=vae", "--iter_max=20", "--iter_save=10",
                    f"--out_dir={run_dir.parent}", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((run_dir / "logs" / "evaluation").glob("events.out.tfevents.*"))) == 1
    assert [step for step, _ in _tensorboard(run_dir / "logs" / "evaluation")[
        "evaluation/subset/nelbo"]] == [20]


def test_tensorboard_scalars_leave_out_counts_standard_errors_and_bookkeeping():
    from tfp_vae import pictures
    tags = pictures.scalars({"subset": {"nelbo": {"mean": 1.5, "se": 0.1, "n": 100},
                                        "niwae": {"10": {"mean": 1.2, "se": None, "n": 10}}},
                             "classifier": {"accuracy": 0.9, "n": 10000, "confusion": [[1]]},
                             "run": "name", "resumed": True, "wall_seconds": 3.0})
    assert tags == {"evaluation/subset/nelbo": 1.5, "evaluation/subset/niwae_10": 1.2,
                    "evaluation/classifier/accuracy": 0.9}


@pytest.mark.parametrize("tool", ["train", "evaluate", "sample"])
def test_help_is_short_grouped_and_exits_0(tool):
    proc = run_tool(tool, "--help")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"usage: {tool} [--flag=value ...]" and len(lines) < 90
    assert "Other:" not in proc.stdout  # every flag of the tool is in a group
    assert "--helpfull" in lines[-1] and "--model_dir" in proc.stdout or tool == "train"
