"""The examples in python/examples work against a real broker."""

import os
import subprocess
import sys

from conftest import pattern, wait_until

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples")
PACKAGE = os.path.join(EXAMPLES, os.pardir)


def example(name, *args, **kw):
    env = dict(os.environ, PYTHONPATH=PACKAGE)
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], env=env,
                          capture_output=True, timeout=120, **kw)


def test_echo_server_client_and_bulk(broker, tmp_path):
    log = tmp_path / "server.out"
    env = dict(os.environ, PYTHONPATH=PACKAGE)
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "echo_server.py"), "-s",
                                   broker.socket, "-n", "3", "svc"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: b"listening" in log.read_bytes(), what="echo_server.py to listen")
        run = example("echo_client.py", "-s", broker.socket, "local", "svc", "hello", "world")
        assert run.returncode == 0 and run.stdout == b"hello world\n", run.stderr
        data = pattern(9, 300000)
        run = example("echo_client.py", "-s", broker.socket, "local", "svc", input=data)
        assert run.returncode == 0 and run.stdout == data, run.stderr
        run = example("bulk.py", "-s", broker.socket, "-b", "3000000", "local", "svc")
        assert run.returncode == 0 and b"3000000 bytes echoed" in run.stdout, run.stderr
        assert server.wait(60) == 0
        assert log.read_bytes().count(b"bytes echoed") == 3
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_echo_client_reports_errors(broker):
    run = example("echo_client.py", "-s", broker.socket, "nosuchpeer", "svc", "x")
    assert run.returncode == 1 and b"WH_EUNKNOWN_PEER" in run.stderr
