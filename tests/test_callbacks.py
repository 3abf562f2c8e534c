"""tfp_vae.callbacks and the training loop's log intervals: progress and history on the real
training step, for short, interrupted and resumed runs."""

import csv
import io

import numpy as np
import pytest
import tensorflow as tf

from conftest import QUIET
from tfp_vae import callbacks, train


@pytest.mark.parametrize("start, last, every, per_call, calls", [
    (0, 20000, 1000, 50, [(0, 1000, 20, True)]),
    (0, 100, 1000, 50, [(0, 100, 1, True)]),
    (350, 1000, 100, 50, [(350, 50, 1, True), (400, 100, 6, True)]),
    (950, 1000, 100, 50, [(950, 50, 1, True)]),
    # the tail after the last whole interval: its own call, its last execution shorter
    (300, 1050, 100, 50, [(300, 100, 7, True), (1000, 50, 1, True)]),
    (0, 3095, 1000, 50, [(0, 1000, 3, True), (3000, 95, 1, True)]),
    # resumed off the steps-per-call grid: up to it unlogged, then as the run it continues
    (1234, 3095, 1000, 50, [(1234, 16, 1, False), (1250, 750, 1, True), (2000, 1000, 1, True),
                            (3000, 95, 1, True)]),
    (1234, 1250, 1000, 50, [(1234, 16, 1, True)]),  # ... logged when it ends the run
    (1234, 1240, 1000, 50, [(1234, 6, 1, True)]),
])
def test_fit_calls_keep_the_points_on_the_grid_of_the_run(start, last, every, per_call, calls):
    assert train.fit_calls(start, last, every, per_call) == calls


def test_a_run_shorter_than_its_log_interval_shows_its_real_steps(tmp_path, capsys):
    result = train.run(train.Settings(model="vae", iter_max=10, iter_save=10, log_every=1000,
                                      out_dir=str(tmp_path), **{**QUIET, "verbose": 2}))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert len(lines) == 1 and lines[0].startswith("step 10/10: ") and "val_loss " in lines[0]
    run = tmp_path / result["run"]
    assert [r["step"] for r in csv.DictReader(open(run / "history.csv"))] == ["10"]
    curves = tf.io.decode_png(tf.io.read_file(str(run / "curves.png"))).numpy()
    assert (curves < 128).mean() > 0.005  # more than axes and labels: the point is drawn


def test_a_resumed_run_logs_on_the_same_grid_and_each_step_once(tmp_path):
    settings = dict(model="vae", out_dir=str(tmp_path), log_every=5, **QUIET)
    train.run(train.Settings(iter_max=7, iter_save=7, **settings))  # stopped between points
    result = train.run(train.Settings(iter_max=20, iter_save=10, **settings))
    assert result["resumed_from_step"] == 7
    rows = list(csv.reader(open(tmp_path / result["run"] / "history.csv")))
    assert rows[0][0] == "step" and "epoch" not in rows[0]
    assert [int(r[0]) for r in rows[1:]] == [5, 7, 10, 15, 20]


class _Model:  # what Progress reads of a model: the optimiser's step
    def __init__(self):
        self.optimizer = type("Adam", (), {"iterations": tf.Variable(0)})()


def test_progress_lines_name_the_step_of_the_run_and_its_pace():
    out = io.StringIO()
    progress = callbacks.Progress(last=20, live=False, stream=out)
    progress.set_model(_Model())
    progress.model.optimizer.iterations.assign(10)  # resumed at 10
    progress.on_train_begin()
    progress.model.optimizer.iterations.assign(15)
    progress.on_train_batch_end(0)
    progress.on_epoch_end(0, {"loss": np.float32(1.5), "val_loss": 2.0})
    line = out.getvalue()
    assert line.startswith("step 15/20: loss 1.5, val_loss 2 (") and line.endswith(" ms/step)\n")
