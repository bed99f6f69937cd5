"""`pip install ./python` works offline, with Debian's setuptools (--no-build-isolation: no
index is reached), and the installed package finds the library from $WORMHOLE_LIBRARY."""

import os
import shutil
import subprocess
import sys

import wormhole

HERE = os.path.dirname(os.path.abspath(__file__))


def test_pip_install_into_a_venv(tmp_path):
    source = tmp_path / "src"  # a copy, so that the build leaves nothing in the tree
    shutil.copytree(os.path.join(HERE, os.pardir), source,
                    ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", "--no-build-isolation",
                          "--disable-pip-version-check", str(source)],
                         capture_output=True, text=True, timeout=120)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    env = dict(os.environ, WORMHOLE_LIBRARY=wormhole._lib.lib._name)
    env.pop("PYTHONPATH", None)
    run = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import wormhole, wormhole.aio; print(wormhole.__file__, wormhole.version())"],
                         capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert str(venv) in run.stdout and wormhole.version() in run.stdout
