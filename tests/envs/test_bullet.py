"""envs.bullet: pybullet imports without its C build banner, and the descriptors come back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from envs.bullet import quiet_fds


def test_importing_envs_prints_nothing():
    code = "import envs, gymnasium; gymnasium.make('TopBlockXOnly-v0').reset(seed=0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pybullet build time" not in proc.stdout + proc.stderr
    assert proc.stdout == "" and proc.stderr == ""


def test_quiet_fds_hides_only_the_block_and_restores_the_descriptors(capfd):
    with quiet_fds():
        os.write(1, b"hidden out\n")
        os.write(2, b"hidden err\n")
    os.write(1, b"shown out\n")
    os.write(2, b"shown err\n")
    out, err = capfd.readouterr()
    assert (out, err) == ("shown out\n", "shown err\n")


def test_quiet_fds_restores_on_error(capfd):
    with pytest.raises(RuntimeError, match="inside"):
        with quiet_fds():
            raise RuntimeError("inside")
    os.write(1, b"back\n")
    assert capfd.readouterr().out == "back\n"


def test_quiet_fds_works_when_sys_stdout_has_no_fileno(capsys):
    with pytest.raises((OSError, AttributeError, ValueError)):  # io.UnsupportedOperation is both
        sys.stdout.fileno()  # pytest's capture: a stream without a descriptor
    print("before")
    with quiet_fds():
        pass
    print("after")
    assert capsys.readouterr().out == "before\nafter\n"
