"""The blocking API against real brokers."""

import os
import select
import signal
import threading

import pytest

import wormhole
from conftest import pattern, wait_until


def echo_server(client, count=1):
    """Accepts count streams on client and echoes each until its end, in a thread."""
    def serve():
        for _ in range(count):
            with client.accept(timeout=30) as s:
                buffer = bytearray(65536)
                while True:
                    n = s.readinto(buffer)
                    if not n:
                        break
                    s.write_all(memoryview(buffer)[:n])
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def read_all(stream, size_hint=0):
    out = bytearray()
    buffer = bytearray(65536)
    while True:
        n = stream.readinto(buffer)
        if not n:
            return bytes(out)
        out += buffer[:n]


def test_attach_failure_is_a_typed_error(tmp_path):
    path = str(tmp_path / "nothing.sock")
    with pytest.raises(wormhole.NoBroker) as info:
        wormhole.Client(path)
    e = info.value
    assert e.code == wormhole.WH_ENO_BROKER == -46
    assert e.name == "WH_ENO_BROKER"
    assert path in e.message  # the library's detail names the path
    assert isinstance(e, wormhole.Error) and isinstance(e, ConnectionError)


def test_path_none_is_the_libraries_choice(broker, monkeypatch):
    monkeypatch.setenv("WORMHOLE_SOCKET", broker.socket)
    with wormhole.Client() as client:
        assert len(client.id) == 32
        assert client.fileno() >= 0
    assert client.closed


def test_local_echo_through_a_listener(broker):
    with broker.attach() as server, broker.attach() as client:
        server.listen("svc")
        thread = echo_server(server)
        data = pattern(3, 300000)
        with client.open(wormhole.PEER_LOCAL, "svc", timeout=10) as s:
            assert s.peer == "local" and s.service == "svc"
            s.write_all(data)
            s.shutdown()
            assert read_all(s) == data
            assert s.read(10) == b""  # the end stays the end
        assert s.closed
        thread.join(30)
        assert not thread.is_alive()


def test_peer_echo_readinto_and_read(pair):
    """1 MiB through broker b to a's built-in echo, written in pieces and read back into one
    reused buffer as it comes (the echo returns bytes only as fast as they are read)."""
    a, b = pair
    data = pattern(5, 1 << 20)
    with b.attach() as client, client.open("a", "echo", timeout=10) as s:
        s.settimeout(30)
        sent = 0
        got = bytearray()
        buffer = bytearray(65536)
        view = memoryview(data)
        while sent < len(data):
            sent += s.write(view[sent:sent + 65536])
            while len(got) < sent - 200000:
                got += buffer[:s.readinto(buffer)]
        s.shutdown()
        got += read_all(s)
        assert bytes(got) == data
        assert s.read(-1) == b""


def test_errors_are_typed(broker):
    with broker.attach() as one, broker.attach() as two:
        one.listen("taken")
        with pytest.raises(wormhole.ServiceTaken) as info:
            two.listen("taken")
        assert info.value.name == "WH_ESERVICE_TAKEN" and info.value.message
        with pytest.raises(wormhole.UnknownPeer):
            two.open("nosuchpeer", "x", timeout=1)
        with pytest.raises(wormhole.NoService):
            two.open("local", "nobody", timeout=1)
        with pytest.raises(wormhole.WouldBlock):
            one.accept(timeout=0)
        with pytest.raises(wormhole.Timeout) as info:
            one.accept(timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        one.unlisten("taken")
        with pytest.raises(wormhole.NoService):
            one.unlisten("taken")


def test_stream_timeout_shutdown_and_nonblocking(broker):
    with broker.attach() as server, broker.attach() as client:
        server.listen("svc")
        with client.open("local", "svc", timeout=10) as s, server.accept(timeout=10) as t:
            t.settimeout(0.2)
            assert t.gettimeout() == 0.2
            with pytest.raises(wormhole.Timeout):
                t.read(10)
            t.setblocking(False)
            with pytest.raises(wormhole.WouldBlock) as info:
                t.read(10)
            assert isinstance(info.value, BlockingIOError)
            s.write_all(b"abc")
            s.shutdown()
            with pytest.raises(wormhole.StreamClosed):
                s.write(b"more")
            t.settimeout(10)
            assert t.read(100) == b"abc"
            assert t.read(100) == b""


def test_remote_refusal_arrives_as_the_streams_error(pair):
    a, b = pair
    with b.attach() as client:
        with client.open("a", "no-such-service", timeout=10) as s:
            s.settimeout(10)
            with pytest.raises(wormhole.NoService) as info:  # the peer's 404
                s.read(10)
            e = info.value
            assert e.code == wormhole.WH_ENO_SERVICE and e.remote_code == 404 and e.message
            assert isinstance(s.error, wormhole.NoService)


def test_broker_gone(broker):
    client = broker.attach()
    client.listen("svc")
    s = client.open("local", "svc", timeout=10)
    broker.stop(signal.SIGKILL)
    s.settimeout(10)
    with pytest.raises(wormhole.BrokerGone):
        while True:
            s.read(10)
    with pytest.raises(wormhole.BrokerGone):
        client.listen("other")
    client.close()
    broker.process.returncode = 0  # killed on purpose: the fixture need not complain


def test_makefile_lines(broker):
    with broker.attach() as server, broker.attach() as client:
        server.listen("lines")
        with client.open("local", "lines", timeout=10) as s, server.accept(timeout=10) as t:
            with s.makefile("wb") as f:
                f.write(b"one\ntwo\n")
                f.write(b"three\n")
            s.shutdown()
            reader = t.makefile("r", encoding="ascii")
            assert reader.readlines() == ["one\n", "two\n", "three\n"]
            reader.close()
            assert not t.closed  # the file does not close the stream


def test_fileno_is_pollable(broker):
    with broker.attach() as server, broker.attach() as client:
        server.listen("svc")
        assert select.select([server.fileno()], [], [], 0)[0] == [] or True
        with client.open("local", "svc", timeout=10) as s:
            ready, _, _ = select.select([server.fileno()], [], [], 10)
            assert ready == [server.fileno()]
            with server.accept(timeout=10) as t:
                t.setblocking(False)
                fd = t.fileno()
                with pytest.raises(wormhole.WouldBlock):
                    t.read(1)
                s.write_all(b"x")
                ready, _, _ = select.select([fd], [], [], 10)
                assert ready == [fd]
                assert t.read(1) == b"x"


def test_one_thread_at_a_time(broker):
    with broker.attach() as server, broker.attach() as client:
        server.listen("svc")
        s = client.open("local", "svc", timeout=10)
        t = server.accept(timeout=10)
        got = []
        reader = threading.Thread(target=lambda: got.append(t.read(5)))
        reader.start()
        wait_until(lambda: t._guard._lock.locked(), what="the reader to block")
        with pytest.raises(wormhole.Busy):
            t.read(5)
        with pytest.raises(wormhole.Busy):
            t.close()
        with pytest.raises(wormhole.Busy):
            server.close()
        assert isinstance(wormhole.Busy(wormhole.WH_EINVAL), wormhole.Error)
        s.write_all(b"hello")
        reader.join(10)
        assert got == [b"hello"]
        s.close()
        t.close()


def test_stats(broker):
    with broker.attach() as server, broker.attach() as client:
        server.listen("svc")
        with client.open("local", "svc", timeout=10):
            stats = client.stats()
            assert stats.streams == 1 and stats.streams_opened == 1
            assert stats.broker_clients == 2


def test_closing_the_client_closes_its_streams(broker):
    client = broker.attach()
    client.listen("svc")
    s = client.open("local", "svc", timeout=10)
    client.close()
    assert s.closed
    with pytest.raises(wormhole.InvalidArgument):
        s.read(1)
    s.close()  # idempotent


def test_library_from_the_environment(tmp_path):
    import subprocess
    import sys
    env = dict(os.environ, WORMHOLE_LIBRARY=str(tmp_path / "missing.so"))
    run = subprocess.run([sys.executable, "-c", "import wormhole"], env=env, capture_output=True,
                         text=True, cwd=os.path.join(os.path.dirname(__file__), os.pardir))
    assert run.returncode != 0 and "WORMHOLE_LIBRARY" in run.stderr


class Interrupted(Exception):
    pass


def test_blocking_calls_let_signal_handlers_run(broker):
    """A read or accept without a timeout still returns to Python now and then, so that a
    signal handler (Ctrl-C's KeyboardInterrupt) runs within about a second, not only when
    bytes come (here: 8 s later)."""
    import time

    def alarm(signum, frame):
        raise Interrupted()

    with broker.attach() as server, broker.attach() as client:
        server.listen("svc")
        with client.open("local", "svc", timeout=10) as s, server.accept(timeout=10) as t:
            late = threading.Timer(8, lambda: s.write_all(b"late"))
            previous = signal.signal(signal.SIGALRM, alarm)
            try:
                late.start()
                for call in (lambda: t.read(10), lambda: server.accept()):
                    start = time.monotonic()
                    signal.setitimer(signal.ITIMER_REAL, 0.3)
                    with pytest.raises(Interrupted):
                        call()
                    assert time.monotonic() - start < 5
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
                late.cancel()
                late.join()


def test_distinct_streams_of_one_client_in_threads_at_once(pair):
    """The C library allows it, so the binding must not say Busy: four threads, each with its
    own stream of one client, echo through a's built-in echo at the same time."""
    a, b = pair
    errors = []
    with b.attach() as client:
        streams = [client.open("a", "echo", timeout=10) for _ in range(4)]

        def work(i, s):
            try:
                data = pattern(20 + i, 200000)
                s.settimeout(30)
                for k in range(0, len(data), 20000):
                    s.write_all(data[k:k + 20000])
                    back = bytearray()
                    while len(back) < 20000:
                        back += s.read(20000 - len(back))
                    assert bytes(back) == data[k:k + 20000]
            except Exception as e:  # reported below, in the test's thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(streams)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for s in streams:
            s.close()
    assert errors == []


def test_paths_and_nonblocking_files(broker):
    import pathlib
    with wormhole.Client(pathlib.Path(broker.socket)) as server, broker.attach() as client:
        server.listen("svc")
        with client.open("local", "svc", timeout=10) as s, server.accept(timeout=10) as t:
            t.setblocking(False)
            raw = t.makefile("rb", buffering=0)
            assert raw.readinto(bytearray(10)) is None  # nothing yet, as io's raw files say
            s.write_all(b"abc")
            s.shutdown()
            t.setblocking(True)
            assert raw.read() == b"abc"
