"""Real brokers as processes, as the C integration tests start them (tests/integration/harness.c):
wormhole-broker --listen 127.0.0.1:0 --port-file F --socket S, in a temporary directory.

The broker comes from $WORMHOLE_BROKER, else the build tree (broker/wormhole-broker beside
python/); the library as wormhole._lib finds it ($WORMHOLE_LIBRARY, else the build tree).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir))
sys.path.insert(0, os.path.join(TOP, "python"))  # the package from this tree, not an installed one

import wormhole  # noqa: E402


def broker_path():
    path = os.environ.get("WORMHOLE_BROKER")
    if path:
        if not os.access(path, os.X_OK):
            pytest.fail("WORMHOLE_BROKER=%s is not an executable" % path)
        return path
    path = os.path.join(TOP, "broker", "wormhole-broker")
    if not os.access(path, os.X_OK):
        pytest.skip("no built broker at %s (build the tree, or set WORMHOLE_BROKER)" % path)
    return path


def wait_until(predicate, timeout=15.0, what="condition"):
    """Looks every 10 ms until predicate() is true; fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


class Broker:
    def __init__(self, directory, name, extra=()):
        self.dir = directory
        self.socket = os.path.join(directory, name + ".sock")
        self.port_file = os.path.join(directory, name + ".port")
        self.log = os.path.join(directory, name + ".log")
        argv = [broker_path(), "--listen", "127.0.0.1:0", "--port-file", self.port_file,
                "--log-level", "info", "--socket", self.socket, *extra]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        wait_until(self._has_port, what="the broker's port file (%s)" % self.log)
        with open(self.port_file) as f:
            self.port = int(f.read().split()[0])

    def _has_port(self):
        if self.process.poll() is not None:
            raise AssertionError("the broker exited: " + self.log_text())
        try:
            with open(self.port_file) as f:
                return f.read().strip() != ""
        except FileNotFoundError:
            return False

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def attach(self):
        """A Client attached to this broker (its socket is ready once the port is; retried
        briefly all the same, as the C tests do)."""
        deadline = time.monotonic() + 5
        while True:
            try:
                return wormhole.Client(self.socket)
            except wormhole.NoBroker:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def stop(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def broker(tmp_path):
    """One broker: apps talk through it to each other on peer "local"."""
    b = Broker(str(tmp_path), "a")
    yield b
    assert b.stop() == 0, b.log_text()


@pytest.fixture
def pair(tmp_path):
    """Brokers a and b, b configured with peer a: apps on b open to ("a", "echo")."""
    a = Broker(str(tmp_path), "a")
    b = Broker(str(tmp_path), "b", ["--peer", "a=127.0.0.1:%d" % a.port])
    yield a, b
    assert b.stop() == 0, b.log_text()
    assert a.stop() == 0, a.log_text()


def pattern(seed, size):
    """Bytes that differ per stream and per offset, for checked echoes."""
    block = bytes((seed * 7 + i * 131 + (i >> 8)) & 0xFF for i in range(4096))
    return (block * (size // len(block) + 1))[:size]
