"""tfp_vae.cli and the bin/ tools' refusals: every bad flag and unwritable output is one
`error:` line and exit code 2, before any work."""

import re
import subprocess
import sys

import pytest

from conftest import FAST_EVAL, ROOT, RUN, run_tool, vae_settings
from tfp_vae import train
from tfp_vae.errors import WriteError


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
    ("train", ["--model=two_layer_vae", "--z2=100000000"],
     "--model=two_layer_vae --z=100 --z2=100000000 (batch 97) needs about"),
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


def test_unwritable_places_are_refused_before_any_work(tmp_path):
    (tmp_path / "a_file").write_text("x")
    for out, message in ((tmp_path / "a_file", "--out_dir=" + str(tmp_path / "a_file") +
                          " is a file, not a folder"),
                         ("/proc/tfp_vae_runs", "--out_dir=/proc/tfp_vae_runs cannot be written")):
        with pytest.raises(WriteError, match=re.escape(message)):
            train.run(vae_settings(out))
    (tmp_path / RUN).mkdir()
    (tmp_path / RUN / "checkpoints").write_text("not a folder")
    with pytest.raises(WriteError, match="the checkpoint folder .* is a file, not a folder"):
        train.run(vae_settings(tmp_path))


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


@pytest.mark.parametrize("args, message", [
    (["--objective=iwae", "--train_samples=0"], "flag --train_samples=0: 0 is not a positive"),
    (["--model=ssvae", "--objective=iwae"], "--objective=iwae trains the vae, gmvae, vampprior, "
                                             "two_layer_vae; the ssvae trains on its ELBO"),
    (["--model=fsvae", "--objective=iwae"], "the fsvae trains on its ELBO"),
    (["--model=vampprior", "--pseudo_inputs=0"],
     "--pseudo_inputs must be a whole number > 0, got 0"),
])
def test_bad_objective_flags_are_one_error_line(tmp_path, args, message):
    from conftest import run_tool
    proc = run_tool("train", *args, f"--out_dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]


def test_training_goes_on_when_the_reader_of_its_output_has_gone(tmp_path):
    """``bin/train ... | head -1``: the pipe closes after the first line; the run still trains,
    evaluates and writes its results (no BrokenPipeError)."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "bin" / "train"), "--model=vae",
                             "--iter_max=20", "--iter_save=10", "--log_every=5",
                             f"--out_dir={tmp_path}", *FAST_EVAL],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()  # as head -1 exits
    stderr = proc.stderr.read()
    assert proc.wait(timeout=600) == 0, stderr[-3000:]
    assert first.startswith("data: ") and "BrokenPipe" not in stderr
    assert (tmp_path / RUN / "evaluation.json").exists()
