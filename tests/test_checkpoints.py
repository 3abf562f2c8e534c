"""tfp_vae.checkpoints: kills, Ctrl-C and SIGTERM resume to the uninterrupted weights, damaged
checkpoints and state files, full disks, divergence, determinism."""

import contextlib
import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import (FAST_EVAL, QUIET, ROOT, RUN, copy_run, printed_digest, run_tool,
                      vae_settings, wait_for_checkpoint)
from test_fsvae import write_svhn_mat
from tfp_vae import errors, models, train
from tfp_vae.checkpoints import StepCheckpoint
from tfp_vae.errors import WriteError
from tfp_vae.models import base
from tfp_vae.sources import svhn


@pytest.mark.parametrize("damage", ["garbage text", "random bytes", "empty", "deleted"])
def test_a_damaged_checkpoint_state_file_resumes_from_the_newest_checkpoint(finished, tmp_path,
                                                                           damage):
    out, run_dir = copy_run(finished, tmp_path)
    state = run_dir / "checkpoints" / "checkpoint"
    if damage == "deleted":
        state.unlink()
    else:
        state.write_bytes({"garbage text": b"this is not a checkpoint state\n{",
                           "random bytes": os.urandom(200), "empty": b""}[damage])
    result = train.run(vae_settings(out, iter_max=15))
    assert result["resumed_from_step"] == 10 and result["steps"] == 15
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.index"))
    assert names == ["ckpt-10.index", "ckpt-15.index", "ckpt-5.index"]


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
        train.run(vae_settings(tmp_path, steps_per_execution=5))
    assert sorted(p.name for p in (tmp_path / RUN / "checkpoints").glob("*.index")) == \
        ["ckpt-5.index"]


def _start(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "bin" / "train"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _uninterrupted(*args):
    """A bin/train of ``args`` running beside the block (the two cores share the work); yields
    a function that waits for it and returns its stdout. Killed if the block fails."""
    reference = _start(*args)

    def finished():
        out, err = reference.communicate(timeout=600)
        assert reference.returncode == 0, err[-3000:]
        return out
    try:
        yield finished
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.communicate()


def test_ctrl_c_and_sigkill_then_resume_end_with_the_uninterrupted_weights(tmp_path):
    """A real bin/train is stopped by SIGINT, started again and stopped by SIGTERM (each time it
    saves the current step and exits 130), started again and killed with SIGKILL at a random
    moment, then started again: it ends at exactly --iter_max steps with the bit-identical weights
    of an uninterrupted run."""
    args = ["--model=vae", "--iter_max=600", "--iter_save=100", "--log_every=100",
            "--deterministic", *FAST_EVAL]
    with _uninterrupted(*args, f"--out_dir={tmp_path / 'straight'}") as reference:
        resumed, stopped = _interrupt_three_ways_then_resume(args, tmp_path / "interrupted")
        reference_out = reference()
    checkpoints = tmp_path / "interrupted" / "model=vae_z=10_run=0000" / "checkpoints"
    assert "resumed from" in resumed.stdout
    result = json.loads((checkpoints.parent / "evaluation.json").read_text())
    assert result["steps"] == 600 and result["resumed_from_step"] > stopped
    assert (printed_digest(resumed.stdout) == printed_digest(reference_out)
            == result["weights_sha256"])
    straight = json.loads((tmp_path / "straight" / checkpoints.parent.name /
                           "evaluation.json").read_text())
    assert result["subset"] == straight["subset"]  # the same evaluation, number for number


def _interrupt_three_ways_then_resume(args, out):
    """Stops a bin/train of ``args`` with SIGINT, then SIGTERM, then SIGKILL, each after a newer
    checkpoint, and runs it to the end; returns the last process and the step of the last
    signalled stop."""
    checkpoints = out / "model=vae_z=10_run=0000" / "checkpoints"
    stopped = 0
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, then a preemption
        proc = _start(*args, f"--out_dir={out}")
        wait_for_checkpoint(checkpoints, proc, newer_than=stopped)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr[-3000:]
        assert f"{sig.name}: saving a checkpoint after this step" in stderr
        step = int(re.search(r"stopped at step (\d+) of 600", stderr).group(1))
        assert stopped < step < 600
        assert tf.train.latest_checkpoint(checkpoints).endswith(f"ckpt-{step}")
        assert "Traceback" not in stderr
        stopped = step

    proc = _start(*args, f"--out_dir={out}")
    wait_for_checkpoint(checkpoints, proc, newer_than=stopped)
    proc.kill()  # SIGKILL: no handler runs, files may be half written
    proc.communicate()

    resumed = run_tool("train", *args, f"--out_dir={out}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return resumed, stopped


def _kill_at_a_random_moment(folder, proc, before_step, max_delay=1.0):
    """SIGKILLs ``proc`` at a random moment after its first checkpoint (up to ``max_delay`` s
    later), but at once when it publishes the checkpoint of ``before_step``, so that the kill
    lands before the run's last checkpoint however fast the machine; returns the newest
    checkpoint's step at the kill."""
    wait_for_checkpoint(folder, proc)
    deadline = time.time() + random.uniform(0, max_delay)
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if int(tf.train.latest_checkpoint(folder).rsplit("-", 1)[1]) >= before_step:
            break
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no handler runs, files may be half written
    proc.communicate()
    return int(tf.train.latest_checkpoint(folder).rsplit("-", 1)[1])


@pytest.mark.parametrize("model", ["ssvae", "fsvae"])
def test_ssvae_and_fsvae_resume_after_sigkill_with_the_uninterrupted_weights(tmp_path, model):
    """The labelled streams resume exactly too: a real bin/train of the SSVAE (100 labelled
    images beside the unlabelled stream) and of the FSVAE (images with their labels, on tiny
    SVHN .mat files) is SIGKILLed at a random moment after its first checkpoint and started
    again with the same command; it ends with the weights of an uninterrupted run, bit for bit,
    and the same evaluation (the SSVAE's test accuracy and confusion matrix, the FSVAE's check of
    its conditional samples), number for number."""
    args = [f"--model={model}", "--iter_max=40", "--iter_save=10", "--log_every=10",
            "--deterministic", "--nofull_test", "--noexport"]
    if model == "ssvae":
        run, compared = "model=ssvae_gw=1_cw=100_run=0000", "classifier"
    else:
        folder = tmp_path / "svhn"
        folder.mkdir()
        for (_split, name), n, seed in zip(svhn.FILES.items(), (40, 30, 50), (1, 2, 3)):
            write_svhn_mat(folder / name, n, seed)
        args += [f"--data_dir={folder}", "--batch_size=16", "--check_steps=5"]
        run, compared = "model=fsvae_dataset=svhn_run=0000", "sample_check"
    with _uninterrupted(*args, f"--out_dir={tmp_path / 'straight'}") as reference:
        out = tmp_path / "interrupted"
        checkpoints = out / run / "checkpoints"
        killed_at = _kill_at_a_random_moment(checkpoints, _start(*args, f"--out_dir={out}"),
                                             before_step=30)
        resumed = run_tool("train", *args, f"--out_dir={out}")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"resumed from {checkpoints / f'ckpt-{killed_at}'}" in resumed.stdout
        stdout = reference()
    result = json.loads((out / run / "evaluation.json").read_text())
    assert result["steps"] == 40 and 10 <= result["resumed_from_step"] == killed_at < 40
    assert printed_digest(resumed.stdout) == printed_digest(stdout) == result["weights_sha256"]
    straight = json.loads((tmp_path / "straight" / run / "evaluation.json").read_text())
    assert result[compared] == straight[compared]  # the same evaluation, number for number


def test_deterministic_runs_are_bit_identical(tmp_path):
    args = ["--model=ssvae", "--iter_max=8", "--iter_save=4", "--log_every=4", "--deterministic",
            "--nofull_test", "--noexport"]
    runs = [run_tool("train", *args, f"--out_dir={tmp_path / str(i)}") for i in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert printed_digest(runs[0].stdout) == printed_digest(runs[1].stdout)
    results = [json.loads((tmp_path / str(i) / "model=ssvae_gw=1_cw=100_run=0000" /
                           "evaluation.json").read_text()) for i in range(2)]
    assert results[0]["classifier"] == results[1]["classifier"]


def _poisoned_after(step):
    """VAE.loss_and_terms that turns the loss into NaN from optimiser step ``step`` on."""
    def loss_and_terms(self, data, seed):
        loss, terms = base.BaseVAE.loss_and_terms(self, data, seed)
        poison = tf.where(self.optimizer.iterations >= step, np.nan, 1.0)
        return loss * poison, {**terms, "nelbo": terms["nelbo"] * poison}
    return loss_and_terms


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(models.VAE, "loss_and_terms", _poisoned_after(12))
    config = train.Settings(model="vae", iter_max=40, iter_save=5, log_every=5,
                               steps_per_execution=1, out_dir=str(tmp_path), **QUIET)
    with pytest.raises(errors.Diverged) as failure:
        train.run(config)
    folder = tmp_path / RUN / "checkpoints"
    message = str(failure.value)
    assert "diverged at step 13" in message and "nelbo" in message
    assert f"The last good checkpoint, {folder / 'ckpt-10'}, is kept" in message
    assert "Lower --lr" in message
    assert tf.train.latest_checkpoint(folder) == str(folder / "ckpt-10")
    assert sorted(p.name for p in folder.glob("*.index")) == ["ckpt-10.index", "ckpt-5.index"]
    reader = tf.train.load_checkpoint(str(folder / "ckpt-10"))
    assert all(np.isfinite(reader.get_tensor(name)).all()
               for name, _ in tf.train.list_variables(str(folder / "ckpt-10"))
               if reader.get_variable_to_dtype_map()[name].is_floating)
    assert not (tmp_path / RUN / "evaluation.json").exists()


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog):
    config = train.Settings(model="vae", iter_max=20, iter_save=10, log_every=10,
                               out_dir=str(tmp_path), **QUIET)
    train.run(config)
    folder = tmp_path / RUN / "checkpoints"
    data_file = next(folder.glob("ckpt-20.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:1000])  # e.g. a disk that filled up
    caplog.clear()
    result = train.run(train.Settings(model="vae", iter_max=30, iter_save=10, log_every=10,
                                         out_dir=str(tmp_path), **QUIET))
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"checkpoint {folder / 'ckpt-20'} cannot be restored" in m for m in warned)
    assert result["resumed_from_step"] == 10 and result["steps"] == 30


def test_a_run_resumed_off_the_grid_keeps_its_steps_per_call_and_its_weights(tmp_path,
                                                                             monkeypatch):
    """Resumed at step 13 and ending at 37 with 10 steps per call (checkpoints every 10, logs
    every 30): calls end on the checkpoint steps and at 37, and the weights are those of one
    step per call."""
    ends = []
    on_end = StepCheckpoint.on_train_batch_end

    def spy(self, batch, logs=None):
        ends.append(int(self.model.optimizer.iterations.numpy()))
        return on_end(self, batch, logs)
    every = dict(iter_save=10, log_every=30)
    one = train.run(vae_settings(tmp_path / "one", iter_max=37, steps_per_execution=1, **every))
    train.run(vae_settings(tmp_path / "cut", iter_max=13, steps_per_execution=1, **every))
    monkeypatch.setattr(StepCheckpoint, "on_train_batch_end", spy)
    resumed = train.run(vae_settings(tmp_path / "cut", iter_max=37, **every))
    assert resumed["resumed_from_step"] == 13 and ends == [20, 30, 37]
    assert resumed["weights_sha256"] == one["weights_sha256"]
    run_dir = tmp_path / "cut" / RUN
    assert {"ckpt-20.index", "ckpt-30.index", "ckpt-37.index"} <= \
        {p.name for p in (run_dir / "checkpoints").glob("*.index")}
    with open(run_dir / "history.csv") as f:  # steps 14-20 count in no row (a call of their own)
        assert [row["step"] for row in csv.DictReader(f)] == ["13", "30", "37"]


def test_several_steps_per_call_name_the_range_of_a_divergence(tmp_path, monkeypatch):
    monkeypatch.setattr(models.VAE, "loss_and_terms", _poisoned_after(12))
    config = train.Settings(model="vae", iter_max=40, iter_save=10, log_every=10,
                               out_dir=str(tmp_path), **QUIET)  # 10 steps per call
    with pytest.raises(errors.Diverged, match=r"diverged at step 20 \(within steps 11-20, run in "
                                             r"one call; --steps_per_execution=1 names"):
        train.run(config)
    folder = tmp_path / RUN / "checkpoints"
    assert tf.train.latest_checkpoint(folder) == str(folder / "ckpt-10")
