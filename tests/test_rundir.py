"""tfp_vae.rundir and the resume identity: one writer per run folder, settings and data a resume
cannot change, config.json and history.csv through damage and resumes."""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import QUIET, ROOT, RUN, copy_run, run_tool, vae_settings
from tfp_vae import rundir, train
from tfp_vae.errors import ConfigError


@pytest.mark.parametrize("damage, message", [
    (None, "config.json is missing"),
    ("{not json", "config.json is unreadable"),
    ("null", "config.json is unreadable (it holds NoneType"),
    ("[1, 2]", "config.json is unreadable (it holds list"),
])
def test_a_missing_or_damaged_config_cannot_let_other_settings_in(finished, tmp_path, damage,
                                                                  message):
    out, run_dir = copy_run(finished, tmp_path)
    if damage is None:
        (run_dir / "config.json").unlink()
    else:
        (run_dir / "config.json").write_text(damage)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        train.run(vae_settings(out, iter_max=20, lr=0.5, batch_size=50))
    assert not (run_dir / "checkpoints" / "ckpt-15.index").exists()


def test_an_iter_max_below_the_trained_steps_is_refused(finished, tmp_path):
    out, run_dir = copy_run(finished, tmp_path)
    with pytest.raises(ConfigError, match="has trained 10 steps already, more than --iter_max=5"):
        train.run(vae_settings(out, iter_max=5))
    assert json.loads((run_dir / "evaluation.json").read_text())["steps"] == 10


def test_history_after_a_resume_holds_each_step_once(finished, tmp_path):
    out, run_dir = copy_run(finished, tmp_path)
    history = run_dir / "history.csv"
    rows = list(csv.DictReader(history.open()))
    assert [int(r["step"]) for r in rows] == [5, 10]
    # A run killed after logging step 10 but before its checkpoint was published, mid-line.
    (run_dir / "checkpoints" / "ckpt-10.index").unlink()
    with history.open("a") as f:
        f.write("2,1.0,2.0")  # half a row of a later epoch
    result = train.run(vae_settings(out, iter_max=10))
    assert result["resumed_from_step"] == 5
    rows = list(csv.DictReader(history.open()))
    assert [int(r["step"]) for r in rows] == [5, 10]
    assert history.read_text().endswith("\n")


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


def test_a_resume_onto_an_older_history_csv_keeps_every_row_under_one_header(finished, tmp_path):
    """A history.csv without the val_ columns (an older version's), resumed twice: the file is
    rewritten once with the union of the columns (NA where a row has none), and every row
    matches the header."""
    out, run = copy_run(finished, tmp_path)
    history = run / "history.csv"
    rows = list(csv.DictReader(open(history)))
    old_columns = ["epoch", "kl", "nelbo", "rec", "step"]
    with open(history, "w", newline="") as f:
        writer = csv.DictWriter(f, old_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    for iter_max in (15, 20):
        train.run(vae_settings(out, iter_max=iter_max))
    table = list(csv.reader(open(history)))
    assert all(len(row) == len(table[0]) for row in table)
    assert "val_nelbo" in table[0]
    by_step = {row[table[0].index("step")]: row for row in table[1:]}
    assert sorted(map(int, by_step)) == [5, 10, 15, 20]
    assert by_step["10"][table[0].index("val_nelbo")] == "NA"
    assert by_step["20"][table[0].index("val_nelbo")] != "NA"


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


def test_a_run_older_than_a_setting_resumes_only_with_the_behaviour_it_had(tmp_path):
    """A config.json written before --kl_warmup existed: the run had none, so resuming it with
    one is refused, and without one goes on."""
    from tfp_vae import settings
    (tmp_path / "config.json").write_text(json.dumps({"model": "vae", "lr": 0.001}))
    identity = ("model", "lr", "kl_warmup")
    rundir.check_resume_settings(str(tmp_path), {"model": "vae", "lr": 0.001, "kl_warmup": 0},
                                 identity, assumed=settings.SINCE_ADDED)
    with pytest.raises(ConfigError, match="started with --kl_warmup=0, but this command asks "
                                          "for --kl_warmup=100"):
        rundir.check_resume_settings(str(tmp_path), {"model": "vae", "lr": 0.001,
                                                     "kl_warmup": 100},
                                     identity, assumed=settings.SINCE_ADDED)
