"""tfp_vae.files: outputs land only on new or regular files (links followed, devices, FIFOs,
sockets and folders refused), atomically, and what a killed writer left is cleaned up."""

import os
import socket

import pytest

from conftest import run_tool
from tfp_vae import export, files, models, settings
from tfp_vae.errors import WriteError


def _special(tmp_path):
    """A FIFO, a socket and a link to the FIFO in ``tmp_path``."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    (tmp_path / "link").symlink_to(fifo)
    return {"a FIFO": fifo, "a socket": sock_path, "a FIFO)": tmp_path / "link"}, sock


def test_writes_refuse_what_is_not_a_regular_file_and_leave_it_alone(tmp_path):
    special, sock = _special(tmp_path)
    with sock:
        for kind, path in special.items():
            for write in (lambda p: files.write_bytes_atomic(p, b"png"),
                          lambda p: files.writable_file(p, "--out")):
                with pytest.raises(WriteError, match=f"is {kind.rstrip(')')}, not a file"):
                    write(path)
        assert (tmp_path / "fifo").exists() and not (tmp_path / "fifo").is_file()
        assert (tmp_path / "link").is_symlink()
    with pytest.raises(WriteError, match="is a character device"):
        files.regular_target("/dev/null", "--out")


def test_a_link_to_a_file_is_followed_and_the_link_kept(tmp_path):
    target = tmp_path / "real.png"
    target.write_bytes(b"old")
    (tmp_path / "link.png").symlink_to(target)
    files.write_bytes_atomic(tmp_path / "link.png", b"new")
    assert (tmp_path / "link.png").is_symlink() and target.read_bytes() == b"new"


def test_bin_sample_refuses_a_fifo_as_out(tmp_path):
    os.mkfifo(tmp_path / "out.png")
    proc = run_tool("sample", "--model_dir=pretrained:vae", f"--out={tmp_path / 'out.png'}")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: --out={tmp_path / 'out.png'} is a FIFO, not a file; pass the name of a new "
        f"or regular file."]
    assert not (tmp_path / "out.png").is_file()


def test_what_a_killed_export_left_is_removed_by_the_next(tmp_path):
    stale = tmp_path / "savedmodel.tmp-999999999"  # no such process
    stale.mkdir()
    (stale / "variables").write_bytes(b"x" * 1000)
    live = tmp_path / f"savedmodel.tmp-{os.getppid()}"  # a running process's: left alone
    live.mkdir()
    export.export(models.VAE(z_dim=2, image_shape=(4, 4, 1)), tmp_path / "savedmodel")
    assert not stale.exists() and live.exists()
    assert (tmp_path / "savedmodel" / "saved_model.pb").exists()


def test_an_export_never_replaces_a_folder_or_file_it_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (tmp_path / "file").write_text("data")
    model = models.VAE(z_dim=2, image_shape=(4, 4, 1))
    with pytest.raises(WriteError, match="holds no SavedModel"):
        export.export(model, mine)
    with pytest.raises(WriteError, match="is not a folder"):
        export.export(model, tmp_path / "file")
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_a_tilde_in_out_dir_is_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert settings.Settings(out_dir="~/runs").resolve().out_dir == str(tmp_path / "runs")
    assert files.writable_dir("~/x", "--pictures_dir") == str(tmp_path / "x")
