"""tfp_vae.distribute: --strategy=multiworker with real bin/train processes on 127.0.0.1 (TF_CONFIG
checked, waiting for peers with a timeout naming the missing ones, Ctrl-C and SIGTERM, a
preemption that checkpoints the whole cluster at one step, a killed worker resumed)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import FAST_EVAL, ROOT, free_ports, printed_digest, wait_for_checkpoint
from tfp_vae import distribute, train


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
    args = ["--model=vae", "--strategy=multiworker", "--iter_max=150", "--iter_save=50",
            "--log_every=50", f"--out_dir={tmp_path}", *FAST_EVAL]
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
    first = wait_for_checkpoint(run_dir / "checkpoints", chief)
    worker.kill()
    chief.kill()  # its peer is gone: the cluster is restarted as a whole
    for proc in (chief, worker):
        proc.communicate()

    procs = start_both()
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr[-3000:]
        assert "resumed from" in stdout
    assert printed_digest(outputs[0][0]) == printed_digest(outputs[1][0])
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["steps"] == 150 and result["resumed_from_step"] >= first >= 50
    assert result["weights_sha256"] == printed_digest(outputs[1][0])
    assert "Reference protocol" in outputs[0][0] and "Reference protocol" not in outputs[1][0]
    assert not (run_dir / "workers").exists()  # the non-chief's scratch checkpoints are gone


def _worker(workers, index, log, *args):
    """``bin/train --strategy=multiworker args`` as worker ``index`` of ``workers``, its output
    (stdout and stderr) in the file ``log``."""
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
    out = open(log, "w")
    return subprocess.Popen([sys.executable, str(ROOT / "bin" / "train"),
                             "--strategy=multiworker", *args], env=env, stdout=out,
                            stderr=subprocess.STDOUT, text=True)


def _errors(log):
    return [line for line in log.read_text().splitlines() if line.startswith("error: ")]


def test_a_worker_whose_peer_never_comes_times_out_naming_it(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    log = tmp_path / "log"
    proc = _worker(workers, 0, log, "--peer_timeout=2", f"--out_dir={tmp_path}")
    assert proc.wait(timeout=120) == 2
    errors = _errors(log)
    assert len(errors) == 1 and f"no worker answered at {workers[1]} within " \
        "--peer_timeout=2 s" in errors[0], log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()


def _wait_for(log, text, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in log.read_text():
            return
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not seen within {timeout} s: {log.read_text()[-3000:]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stop_a_worker_waiting_for_its_peer(tmp_path, sig):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    log = tmp_path / "log"
    proc = _worker(workers, 1, log, f"--out_dir={tmp_path}")  # waits up to 600 s
    _wait_for(log, f"waiting for 1 worker(s) at {workers[0]}", proc)
    sent = time.time()
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 130
    assert time.time() - sent < 10
    assert _errors(log) == [f"error: {sig.name} while waiting for the other workers; nothing "
                            f"was trained."]


def test_sigterm_on_one_worker_checkpoints_every_worker_at_the_same_step(tmp_path):
    """TensorFlow's PreemptionCheckpointHandler: SIGTERM reaches the non-chief worker only; both
    stop at the same step N (between periodic checkpoints), the chief's folder holds ckpt-N, and
    both resume from it to the same weights."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    args = ["--iter_max=5000", "--iter_save=5000", "--log_every=10", f"--out_dir={tmp_path}",
            *FAST_EVAL]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = [_worker(workers, i, logs[i], *args) for i in range(2)]
    _wait_for(logs[0], "step 20/5000: ", procs[0])
    procs[1].send_signal(signal.SIGTERM)
    assert [proc.wait(timeout=300) for proc in procs] == [130, 130]
    stopped = [re.findall(r"stopped at step (\d+) of 5000", log.read_text()) for log in logs]
    assert stopped[0] and stopped[0] == stopped[1], [log.read_text()[-2000:] for log in logs]
    step = int(stopped[0][0])
    folder = tmp_path / "model=vae_z=10_run=0000" / "checkpoints"
    assert 20 < step < 5000 and (folder / f"ckpt-{step}.index").exists()

    resumed = [tmp_path / f"resumed{i}.log" for i in range(2)]
    args[0] = f"--iter_max={step + 10}"
    procs = [_worker(workers, i, resumed[i], *args) for i in range(2)]
    assert [proc.wait(timeout=300) for proc in procs] == [0, 0], resumed[1].read_text()[-3000:]
    digests = [re.findall(rf"step {step + 10}: weights sha256 (\w+)", log.read_text())
               for log in resumed]
    assert digests[0] and digests[0] == digests[1]
    assert all(f"resumed from {folder / f'ckpt-{step}'}" in log.read_text() for log in resumed)


def test_ipv6_addresses_are_understood_and_reached():
    import socket
    from tfp_vae import distribute
    assert distribute.host_port("[::1]:1234") == ("::1", 1234)
    assert distribute.host_port("host:0") is None and distribute.host_port("host") is None
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
        port = server.getsockname()[1]
        assert distribute._answers(f"[::1]:{port}")
    assert not distribute._answers(f"[::1]:{port}")
