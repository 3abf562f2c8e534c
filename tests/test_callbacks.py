"""tfp_vae.callbacks and the training loop's log intervals: progress and history on the real
training step, for short, interrupted and resumed runs."""

import csv
import dataclasses
import gc
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


# val_nelbo by step, as the Validation callback would report it: best at step 4; with a patience
# of 4 steps, training stops at step 8.
SCRIPTED_VAL = {2: 5.0, 4: 4.0, 6: 4.5, 8: 4.2, 10: 3.0, 12: 3.0}


@pytest.fixture
def scripted_validation(monkeypatch):
    def on_epoch_end(self, epoch, logs=None):
        logs["val_nelbo"] = SCRIPTED_VAL[int(self.model.optimizer.iterations.numpy())]
    monkeypatch.setattr(callbacks.Validation, "on_epoch_end", on_epoch_end)


def _stopping(out, iter_max):
    return train.Settings(model="vae", iter_max=iter_max, iter_save=2, log_every=2,
                          validation=100, patience=4, out_dir=str(out), **QUIET)


def test_early_stopping_stops_after_its_patience_and_exports_the_best_weights(
        tmp_path, scripted_validation, caplog):
    caplog.set_level("INFO", logger="tfp_vae")
    result = train.run(_stopping(tmp_path / "a", 12))
    gc.collect()  # TensorFlow warns of a checkpoint's unread values when it is collected
    assert "59,900 training and 100 validation" in caplog.text  # the split is held out
    assert "unrestored values" not in caplog.text and "could not be found" not in caplog.text
    assert result["early_stopping"] == {"patience": 4, "best_step": 4, "best_val_nelbo": 4.0,
                                        "stopped_at": 8}
    best = train.run(train.Settings(model="vae", iter_max=4, iter_save=2, log_every=2,
                                    validation=100, out_dir=str(tmp_path / "b"), **QUIET))
    assert result["weights_sha256"] == best["weights_sha256"]  # the weights of step 4


def test_early_stopping_resumed_stops_where_the_uninterrupted_run_stops(tmp_path,
                                                                       scripted_validation):
    straight = train.run(_stopping(tmp_path / "a", 12))
    train.run(_stopping(tmp_path / "b", 6))  # interrupted at 6: best 4, not yet stopped
    resumed = train.run(_stopping(tmp_path / "b", 12))
    assert resumed["resumed_from_step"] == 6
    assert resumed["early_stopping"] == straight["early_stopping"]
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    again = train.run(_stopping(tmp_path / "b", 12))  # a stopped run only evaluates again
    assert again["train_seconds"] == 0 and again["weights_sha256"] == straight["weights_sha256"]


def test_early_stopping_counts_its_patience_from_the_end_of_the_kl_warmup(tmp_path,
                                                                         scripted_validation):
    """The VampPrior paper's code restarts the count during the warm-up: with one of 8 steps,
    step 8 (4 steps after the best) does not stop; step 10 improves; none stops by 12."""
    result = train.run(dataclasses.replace(_stopping(tmp_path, 12), kl_warmup=8))
    assert result["early_stopping"] == {"patience": 4, "best_step": 10, "best_val_nelbo": 3.0,
                                        "stopped_at": None}


def test_history_rows_stay_on_the_log_grid_when_an_epoch_is_cut_short(tmp_path):
    """Keras ends an epoch cut by Ctrl-C or a divergence too: no row for it (the resumed run
    logs that interval on the grid)."""
    history = callbacks.HistoryCSV(str(tmp_path / "history.csv"), 1000, last=2500)
    history.set_model(_Model())
    for step in (1000, 1350, 2000, 2500):
        history.model.optimizer.iterations.assign(step)
        history.on_epoch_end(0, {"loss": float(step)})
    assert [r["step"] for r in csv.DictReader(open(tmp_path / "history.csv"))] == \
        ["1000", "2000", "2500"]
