"""Crash safety, numerical faults, determinism and refusals of training runs."""

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

from conftest import ROOT, free_ports, run_tool
from test_fsvae import write_svhn_mat
from tfp_vae import distribute, errors, models, train
from tfp_vae.models import base
from tfp_vae.sources import svhn

FAST = ["--eval_repeats=2", "--iwae_samples=1", "--nofull_test", "--noexport"]
RUN = "model=vae_z=10_run=0000"  # the run name of TrainConfig(model="vae") on MNIST
QUIET = dict(eval_repeats=2, iwae_samples=(1,), full_test=False, export=False, verbose=0)


def _digest(stdout):
    """The final weights digest that bin/train prints."""
    found = re.findall(r"weights sha256 ([0-9a-f]{64})", stdout)
    assert found, stdout[-2000:]
    return found[-1]


def _start(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "bin" / "train"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(folder, proc, newer_than=0, timeout=300):
    """Waits until the run publishes a checkpoint of a step > newer_than; returns that step."""
    state = os.path.join(folder, "checkpoint")
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        latest = tf.train.latest_checkpoint(folder) if os.path.exists(state) else None
        if latest and int(latest.rsplit("-", 1)[1]) > newer_than:
            return int(latest.rsplit("-", 1)[1])
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint after step {newer_than} within {timeout} s")


def test_ctrl_c_and_sigkill_then_resume_end_with_the_uninterrupted_weights(tmp_path):
    """A real bin/train is stopped by SIGINT, started again and stopped by SIGTERM (each time it
    saves the current step and exits 130), started again and killed with SIGKILL at a random
    moment, then started again: it ends at exactly --iter_max steps with the bit-identical weights
    of an uninterrupted run."""
    args = ["--model=vae", "--iter_max=1000", "--iter_save=100", "--log_every=100",
            "--deterministic", *FAST]
    reference = run_tool("train", *args, f"--out_dir={tmp_path / 'straight'}")
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "interrupted"
    checkpoints = out / "model=vae_z=10_run=0000" / "checkpoints"
    stopped = 0
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, then a preemption
        proc = _start(*args, f"--out_dir={out}")
        _wait_for_checkpoint(checkpoints, proc, newer_than=stopped)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr[-3000:]
        assert f"{sig.name}: saving a checkpoint after this step" in stderr
        step = int(re.search(r"stopped at step (\d+) of 1000", stderr).group(1))
        assert stopped < step < 1000
        assert tf.train.latest_checkpoint(checkpoints).endswith(f"ckpt-{step}")
        assert "Traceback" not in stderr
        stopped = step

    proc = _start(*args, f"--out_dir={out}")
    _wait_for_checkpoint(checkpoints, proc, newer_than=stopped)
    proc.kill()  # SIGKILL: no handler runs, files may be half written
    proc.communicate()

    resumed = run_tool("train", *args, f"--out_dir={out}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    result = json.loads((checkpoints.parent / "evaluation.json").read_text())
    assert result["steps"] == 1000 and result["resumed_from_step"] > stopped
    assert _digest(resumed.stdout) == _digest(reference.stdout) == result["weights_sha256"]
    straight = json.loads((tmp_path / "straight" / checkpoints.parent.name /
                           "evaluation.json").read_text())
    assert result["subset"] == straight["subset"]  # the same evaluation, number for number


def _kill_at_a_random_moment(folder, proc, before_step, max_delay=1.0):
    """SIGKILLs ``proc`` at a random moment after its first checkpoint (up to ``max_delay`` s
    later), but at once when it publishes the checkpoint of ``before_step``, so that the kill
    lands before the run's last checkpoint however fast the machine; returns the newest
    checkpoint's step at the kill."""
    _wait_for_checkpoint(folder, proc)
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
    # The uninterrupted run goes on beside the interrupted one (the two cores share the work).
    reference = _start(*args, f"--out_dir={tmp_path / 'straight'}")
    try:
        out = tmp_path / "interrupted"
        checkpoints = out / run / "checkpoints"
        killed_at = _kill_at_a_random_moment(checkpoints, _start(*args, f"--out_dir={out}"),
                                             before_step=30)
        resumed = run_tool("train", *args, f"--out_dir={out}")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"resumed from {checkpoints / f'ckpt-{killed_at}'}" in resumed.stdout
        stdout, stderr = reference.communicate(timeout=600)
    finally:
        if reference.poll() is None:  # a failure above: do not leave it running
            reference.kill()
            reference.communicate()
    assert reference.returncode == 0, stderr[-3000:]
    result = json.loads((out / run / "evaluation.json").read_text())
    assert result["steps"] == 40 and 10 <= result["resumed_from_step"] == killed_at < 40
    assert _digest(resumed.stdout) == _digest(stdout) == result["weights_sha256"]
    straight = json.loads((tmp_path / "straight" / run / "evaluation.json").read_text())
    assert result[compared] == straight[compared]  # the same evaluation, number for number


def test_deterministic_runs_are_bit_identical(tmp_path):
    args = ["--model=ssvae", "--iter_max=8", "--iter_save=4", "--log_every=4", "--deterministic",
            "--nofull_test", "--noexport"]
    runs = [run_tool("train", *args, f"--out_dir={tmp_path / str(i)}") for i in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert _digest(runs[0].stdout) == _digest(runs[1].stdout)
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


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    config = train.Settings(model="vae", iter_max=20, iter_save=10, log_every=10,
                               out_dir=str(tmp_path), **QUIET)
    train.run(config)
    folder = tmp_path / RUN / "checkpoints"
    data_file = next(folder.glob("ckpt-20.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:1000])  # e.g. a disk that filled up
    capsys.readouterr()
    result = train.run(train.Settings(model="vae", iter_max=30, iter_save=10, log_every=10,
                                         out_dir=str(tmp_path), **QUIET))
    err = capsys.readouterr().err
    assert f"checkpoint {folder / 'ckpt-20'} cannot be restored" in err
    assert result["resumed_from_step"] == 10 and result["steps"] == 30


def test_resuming_with_other_settings_is_refused(tmp_path):
    train.run(train.Settings(model="vae", iter_max=5, iter_save=5, log_every=5,
                                out_dir=str(tmp_path), **QUIET))
    changed = train.Settings(model="vae", iter_max=10, iter_save=5, log_every=5, lr=1e-2,
                                batch_size=50, out_dir=str(tmp_path), **QUIET)
    with pytest.raises(train.ConfigError, match=r"started with --batch_size=97, --lr=0.001, but "
                                                r"this command asks for --batch_size=50, "
                                                r"--lr=0.01\. Resume with the same settings"):
        train.run(changed)
    # What may change between starts (the length, checkpoints, evaluation) is accepted.
    result = train.run(train.Settings(model="vae", iter_max=10, iter_save=10, log_every=10,
                                         out_dir=str(tmp_path), **QUIET))
    assert result["steps"] == 10 and result["resumed_from_step"] == 5


@pytest.mark.parametrize("tf_config, message", [
    (None, "reads the cluster from the TF_CONFIG environment variable, which is not set"),
    ("{not json", "TF_CONFIG is not a valid cluster description (JSONDecodeError"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG is not a valid cluster description (KeyError"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     "task type 'ps' is not supported"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
     "task index 2 is outside the 2 worker address(es)"),
    ('{"cluster": {"worker": ["a:99999"]}, "task": {"type": "worker", "index": 0}}',
     "address 'a:99999' is not host:port with a port in 1..65535"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG names a:1 more than once"),
])
def test_multiworker_refuses_a_missing_or_wrong_tf_config(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(train.ConfigError) as e:
        distribute.make_strategy(train.Settings(strategy="multiworker").resolve())
    assert message in str(e.value)


def test_two_workers_train_identically_and_resume_after_a_worker_is_killed(tmp_path):
    """--strategy=multiworker with two processes on 127.0.0.1: one is SIGKILLed after the first
    checkpoint, the other is stopped, both are started again and finish from the checkpoint with
    the same weights; only the chief writes the run's files."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    args = ["--model=vae", "--strategy=multiworker", "--iter_max=250", "--iter_save=50",
            "--log_every=50", f"--out_dir={tmp_path}", *FAST]
    run_dir = tmp_path / "model=vae_z=10_run=0000"

    def start_both():
        procs = []
        for index in range(2):
            env = dict(os.environ, TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
            procs.append(subprocess.Popen(
                [sys.executable, str(ROOT / "bin" / "train"), *args], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return procs

    chief, worker = start_both()
    first = _wait_for_checkpoint(run_dir / "checkpoints", chief)
    worker.kill()
    chief.kill()  # its peer is gone: the cluster is restarted as a whole
    for proc in (chief, worker):
        proc.communicate()

    procs = start_both()
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr[-3000:]
        assert "resumed from" in stdout
    assert _digest(outputs[0][0]) == _digest(outputs[1][0])
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["steps"] == 250 and result["resumed_from_step"] >= first >= 50
    assert result["weights_sha256"] == _digest(outputs[1][0])
    assert "Reference protocol" in outputs[0][0] and "Reference protocol" not in outputs[1][0]
    assert not (run_dir / "workers").exists()  # the non-chief's scratch checkpoints are gone


def test_several_steps_per_call_name_the_range_of_a_divergence(tmp_path, monkeypatch):
    monkeypatch.setattr(models.VAE, "loss_and_terms", _poisoned_after(12))
    config = train.Settings(model="vae", iter_max=40, iter_save=10, log_every=10,
                               out_dir=str(tmp_path), **QUIET)  # 10 steps per call
    with pytest.raises(errors.Diverged, match=r"diverged at step 20 \(within steps 11-20, run in "
                                             r"one call; --steps_per_execution=1 names"):
        train.run(config)
    folder = tmp_path / RUN / "checkpoints"
    assert tf.train.latest_checkpoint(folder) == str(folder / "ckpt-10")


@pytest.mark.parametrize("settings, start, expected", [
    (dict(iter_save=10000, log_every=1000, iter_max=20000), 0, 50),
    (dict(iter_save=10000, log_every=1000, iter_max=20000), 10150, 50),
    (dict(iter_save=10000, log_every=1000, iter_max=20000), 10130, 10),
    (dict(iter_save=10, log_every=10, iter_max=25), 0, 5),
    (dict(iter_save=7, log_every=7, iter_max=21), 0, 1),
    (dict(iter_save=100, log_every=100, iter_max=1000, strategy="mirrored"), 0, 1),
])
def test_steps_per_execution_divides_every_boundary(settings, start, expected):
    config = train.Settings(**settings).resolve()
    assert train.resolve_steps_per_execution(config, start) == expected


def test_explicit_steps_per_execution_must_fit_the_resumed_step():
    config = train.Settings(iter_save=100, log_every=100, iter_max=1000,
                               steps_per_execution=50).resolve()
    with pytest.raises(train.ConfigError, match="resumes at step 130, which is not a multiple"):
        train.resolve_steps_per_execution(config, 130)
