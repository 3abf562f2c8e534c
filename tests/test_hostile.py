"""Hostile use of a run (issue 15): a second writer, damaged run state, changed or missing
settings, bad flags. Each test fails on the code before its fix."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, run_tool
from tfp_vae import rundir, train
from tfp_vae.errors import ConfigError, NotAModelError, WriteError

QUIET = dict(eval_repeats=1, iwae_samples=(1,), full_test=False, export=False, verbose=0)
RUN = "model=vae_z=10_run=0000"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A VAE run of 10 steps with checkpoints at 5 and 10 and history rows every 5 steps."""
    out = tmp_path_factory.mktemp("finished")
    train.run(train.Settings(model="vae", iter_max=10, iter_save=5, log_every=5,
                                out_dir=str(out), **QUIET))
    return out


def _copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "runs")
    return tmp_path / "runs", tmp_path / "runs" / RUN


def _config(out, **changes):
    return train.Settings(**{**dict(model="vae", iter_max=10, iter_save=5, log_every=5,
                                       out_dir=str(out), **QUIET), **changes})


# ------------------------------------------------------------------ settings cannot be bypassed
@pytest.mark.parametrize("damage, message", [
    (None, "config.json is missing"),
    ("{not json", "config.json is unreadable"),
    ("null", "config.json is unreadable (it holds NoneType"),
    ("[1, 2]", "config.json is unreadable (it holds list"),
])
def test_a_missing_or_damaged_config_cannot_let_other_settings_in(finished, tmp_path, damage,
                                                                  message):
    out, run_dir = _copy(finished, tmp_path)
    if damage is None:
        (run_dir / "config.json").unlink()
    else:
        (run_dir / "config.json").write_text(damage)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        train.run(_config(out, iter_max=20, lr=0.5, batch_size=50))
    assert not (run_dir / "checkpoints" / "ckpt-15.index").exists()


def test_an_iter_max_below_the_trained_steps_is_refused(finished, tmp_path):
    out, run_dir = _copy(finished, tmp_path)
    with pytest.raises(ConfigError, match="has trained 10 steps already, more than --iter_max=5"):
        train.run(_config(out, iter_max=5))
    assert json.loads((run_dir / "evaluation.json").read_text())["steps"] == 10


# -------------------------------------------------------------- the checkpoint state file
@pytest.mark.parametrize("damage", ["garbage text", "random bytes", "empty", "deleted"])
def test_a_damaged_checkpoint_state_file_resumes_from_the_newest_checkpoint(finished, tmp_path,
                                                                           damage):
    out, run_dir = _copy(finished, tmp_path)
    state = run_dir / "checkpoints" / "checkpoint"
    if damage == "deleted":
        state.unlink()
    else:
        state.write_bytes({"garbage text": b"this is not a checkpoint state\n{",
                           "random bytes": os.urandom(200), "empty": b""}[damage])
    result = train.run(_config(out, iter_max=15))
    assert result["resumed_from_step"] == 10 and result["steps"] == 15
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.index"))
    assert names == ["ckpt-10.index", "ckpt-15.index", "ckpt-5.index"]


# ------------------------------------------------------------------------------ history.csv
def test_history_after_a_resume_holds_each_step_once(finished, tmp_path):
    out, run_dir = _copy(finished, tmp_path)
    history = run_dir / "history.csv"
    rows = list(csv.DictReader(history.open()))
    assert [int(r["step"]) for r in rows] == [5, 10]
    # A run killed after logging step 10 but before its checkpoint was published, mid-line.
    (run_dir / "checkpoints" / "ckpt-10.index").unlink()
    with history.open("a") as f:
        f.write("2,1.0,2.0")  # half a row of a later epoch
    result = train.run(_config(out, iter_max=10))
    assert result["resumed_from_step"] == 5
    rows = list(csv.DictReader(history.open()))
    assert [int(r["step"]) for r in rows] == [5, 10]
    assert history.read_text().endswith("\n")


# --------------------------------------------------------------------------- one writer
def test_a_second_process_on_a_run_folder_is_refused_and_a_dead_one_does_not_block(tmp_path):
    run_dir = tmp_path / RUN
    run_dir.mkdir()
    with rundir.run_lock(str(run_dir)):
        proc = run_tool("train", "--model=vae", "--iter_max=2", f"--out_dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"is being trained by process {os.getpid()} on" in proc.stderr
    assert "Traceback" not in proc.stderr
    # A holder killed with SIGKILL leaves the lock file, but not the lock.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from tfp_vae import rundir\n"
        "with rundir.run_lock(sys.argv[2]):\n    print('held', flush=True); time.sleep(600)"),
        str(ROOT), str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ConfigError, match=f"process {holder.pid} on"):
        with rundir.run_lock(str(run_dir)):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with rundir.run_lock(str(run_dir)):
        pass


# -------------------------------------------------------------------------------- bad flags
@pytest.mark.parametrize("tool, args, message", [
    ("train", ["--model=nope"], "flag --model=nope: value should be one of"),
    ("train", ["--z=0"], "flag --z=0: 0 is not a positive integer"),
    ("train", ["--iwae_samples=abc"], "--iwae_samples must be whole numbers, got abc"),
    ("train", ["--iwae_samples="], "--iwae_samples must be one or more numbers"),
    ("train", ["--iwae_samples=1,2000000"], "--iwae_samples must be one or more numbers"),
    ("train", ["extra"], "unexpected arguments: extra"),
    ("train", ["--model=ssvae", "--gw=nan"], "--gw must be a finite number >= 0, got nan"),
    ("train", ["--model=ssvae", "--cw=inf"], "--cw must be a finite number >= 0, got inf"),
    ("train", ["--lr=inf"], "--lr must be a finite positive number, got inf"),
    ("train", ["--seed=4294967296"], "flag --seed=4294967296: 4294967296 is not an integer in"),
    ("train", ["--z=100000000"], "--model=vae --z=100000000 (batch 97) needs about"),
    ("train", ["--model=gmvae", "--k=100000000"],
     "--model=gmvae --z=10 --k=100000000 (batch 97) needs about"),
    ("train", ["--objective=iwae", "--train_samples=10000"],
     "--model=vae --z=10 --train_samples=10000 (batch 97) needs about"),
    ("sample", [f"--model_dir={ROOT / 'savedmodels' / 'vae'}", "--n=1000000000"],
     "--n=1000000000 needs about"),
    ("sample", ["--model_dir=x", "--n=0"], "flag --n=0: 0 is not a positive integer"),
    ("sample", [], "Flag --model_dir must have a value other than None"),
    ("evaluate", ["--model_dir=x", "more"], "unexpected arguments: more"),
    ("evaluate", [f"--model_dir={ROOT / 'savedmodels' / 'vae'}", "--iwae_samples=abc"],
     "--iwae_samples must be whole numbers, got abc"),  # one rule for both tools
    ("evaluate", [f"--model_dir={ROOT / 'savedmodels' / 'vae'}", "--iwae_samples=1,2000000"],
     "--iwae_samples must be one or more numbers in 1..1000000, got [1, 2000000]"),
])
def test_every_bad_flag_is_one_error_line_and_exit_code_2(tmp_path, tool, args, message):
    proc = run_tool(tool, *args, *([f"--out_dir={tmp_path}"] if tool == "train" else []))
    assert proc.returncode == 2, proc.stderr[-2000:]
    ours = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(ours) == 1 and message in ours[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "USAGE" not in proc.stderr


@pytest.mark.parametrize("kind, kwargs", [
    ("vae", {"z_dim": 37}), ("gmvae", {"z_dim": 7, "k": 13}), ("ssvae", {"z_dim": 5}),
    ("fsvae", {"z_dim": 9, "image_shape": (32, 32, 3)}),
    ("vae", {"z_dim": 6, "arch": "conv", "image_shape": (20, 12, 3)}),
])
def test_parameter_counts_are_known_without_building_the_model(kind, kwargs):
    """The count behind bin/train's memory check (four tiny builds) is the built model's."""
    from tfp_vae import memory, registry
    spec = registry.get(kind)
    cls = spec.model_class()
    assert memory.parameter_count(cls, spec.components, **kwargs) == cls(**kwargs).count_params()


# ---------------------------------------------------------------------- file-system faults
def test_unwritable_places_are_refused_before_any_work(tmp_path):
    (tmp_path / "a_file").write_text("x")
    for out, message in ((tmp_path / "a_file", "--out_dir=" + str(tmp_path / "a_file") +
                          " is a file, not a folder"),
                         ("/proc/tfp_vae_runs", "--out_dir=/proc/tfp_vae_runs cannot be written")):
        with pytest.raises(WriteError, match=re.escape(message)):
            train.run(_config(out))
    (tmp_path / RUN).mkdir()
    (tmp_path / RUN / "checkpoints").write_text("not a folder")
    with pytest.raises(WriteError, match="the checkpoint folder .* is a file, not a folder"):
        train.run(_config(tmp_path))


def test_a_full_disk_while_saving_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import tensorflow as tf
    save = tf.train.CheckpointManager.save

    def failing(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == 10:
            raise OSError(28, "No space left on device")
        return save(self, checkpoint_number=checkpoint_number, **kwargs)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", failing)
    with pytest.raises(WriteError, match=r"could not save the checkpoint of step 10 \(.*No space "
                                         r"left on device\); training stopped\. The last good "
                                         r"checkpoint, .*ckpt-5, is kept"):
        train.run(_config(tmp_path, steps_per_execution=5))
    assert sorted(p.name for p in (tmp_path / RUN / "checkpoints").glob("*.index")) == \
        ["ckpt-5.index"]


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


@pytest.mark.parametrize("tool, args, message", [
    ("sample", ["--out={tmp}"], "--out={tmp} is a folder"),
    ("evaluate", ["--out={tmp}"], "--out={tmp} is a folder"),
    ("evaluate", ["--pictures_dir={tmp}/file"], "--pictures_dir={tmp}/file is a file"),
])
def test_unwritable_outputs_of_sample_and_evaluate_are_refused_first(tmp_path, tool, args,
                                                                     message):
    (tmp_path / "file").write_text("x")
    args = [a.format(tmp=tmp_path) for a in args]
    proc = run_tool(tool, "--model_dir=savedmodels/vae", *args, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message.format(tmp=tmp_path) in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------- damaged exports

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


# --------------------------------------------------------------- signatures refuse bad inputs
@pytest.fixture(scope="module")
def conditional_export(tmp_path_factory):
    from tfp_vae import export, models
    root = tmp_path_factory.mktemp("signatures")
    export.export(models.FSVAE(z_dim=2, image_shape=(4, 4, 1), num_classes=3), root / "fsvae")
    export.export(models.GMVAE(z_dim=2, k=5, image_shape=(4, 4, 1)), root / "gmvae")
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
])
def test_signatures_refuse_inputs_they_cannot_mean(conditional_export, kind, signature, inputs,
                                                   message):
    import tensorflow as tf
    loaded = tf.saved_model.load(str(conditional_export / kind))
    values = {"seed": tf.constant([0, 1])}
    for key, value in inputs.items():
        values[key] = tf.fill([1, 16], float(value)) if key == "x" else \
            tf.constant(value, tf.int32)
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


def test_a_resume_onto_an_older_history_csv_keeps_every_row_under_one_header(finished, tmp_path):
    """A history.csv without the val_ columns (an older version's), resumed twice: the file is
    rewritten once with the union of the columns (NA where a row has none), and every row
    matches the header."""
    out, run = _copy(finished, tmp_path)
    history = run / "history.csv"
    rows = list(csv.DictReader(open(history)))
    old_columns = ["epoch", "kl", "nelbo", "rec", "step"]
    with open(history, "w", newline="") as f:
        writer = csv.DictWriter(f, old_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    for iter_max in (15, 20):
        train.run(_config(out, iter_max=iter_max))
    table = list(csv.reader(open(history)))
    assert all(len(row) == len(table[0]) for row in table)
    assert "val_nelbo" in table[0]
    by_step = {row[table[0].index("step")]: row for row in table[1:]}
    assert sorted(map(int, by_step)) == [5, 10, 15, 20]
    assert by_step["10"][table[0].index("val_nelbo")] == "NA"
    assert by_step["20"][table[0].index("val_nelbo")] != "NA"


@pytest.mark.parametrize("field, value", [("arch", "dense"), ("likelihood", "poisson")])
def test_an_unknown_arch_or_likelihood_is_refused_alike_by_config_model_and_networks(field,
                                                                                    value):
    """One rule (config.check_choice): the config names the flag, the model and the network
    builders the argument, each listing the choices."""
    from tfp_vae import errors, models, networks, train
    choices = {"arch": "mlp, conv", "likelihood": "bernoulli, gaussian"}[field]
    with pytest.raises(errors.ConfigError, match=f"--{field} must be one of .*got '{value}'"):
        train.Settings(**{field: value}).resolve()
    with pytest.raises(ValueError, match=f"^{field} must be one of {choices}, got '{value}'"):
        models.VAE(**{field: value})
    builder = {"arch": lambda: networks.encoder(value, (28, 28, 1), 2),
               "likelihood": lambda: networks.decoder("mlp", value, (28, 28, 1), 2)}[field]
    with pytest.raises(ValueError, match=f"^{field} must be one of {choices}, got '{value}'"):
        builder()
