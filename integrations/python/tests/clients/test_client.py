"""The framework-neutral ``Client`` and ``AsyncClient`` against a real
sessiond: every call, the errors, failover, the token and TLS."""

import asyncio
import datetime
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from conftest import closed_port, required, wait_until

from sessiond_client import (
    AsyncClient,
    Client,
    Session,
    SessiondError,
    SessiondUnavailable,
    TlsFiles,
    is_valid_key,
)
from sessiond_client import transport
from sessiond_client.data import Snapshot, decode_data, encode_data

UTC = datetime.timezone.utc
#: A well-formed key that no test stores.
UNKNOWN_KEY = "k" * 32


def in_an_hour():
    return datetime.datetime.now(UTC).replace(microsecond=0) + datetime.timedelta(hours=1)


def test_every_call(client):
    expire = in_an_hour()
    key = client.create({"user": "Zoë"}, expire)
    assert is_valid_key(key) and len(key) == 32
    loaded = client.load(key)
    assert loaded.data == {"user": "Zoë"}
    assert loaded.expire_date == expire
    assert client.exists(key) is True

    assert client.save(key, {"user": "ada", "cart": [1]}, expire) == expire
    assert client.load(key).data == {"user": "ada", "cart": [1]}
    assert client.patch(key, set={"theme": "dark"}, remove=["cart"], expire_date=expire) == expire
    assert client.load(key).data == {"user": "ada", "theme": "dark"}
    client.patch(key, set={"n": 1}, replace=True)
    assert client.load(key).data == {"n": 1}

    moved = client.cycle_key(key, {"n": 2})
    assert moved != key and client.exists(key) is False
    assert client.load(moved).data == {"n": 2}
    assert client.cycle_key(moved) != moved  # without data: what is stored moves

    other = client.create({}, datetime.datetime.now(UTC) - datetime.timedelta(seconds=1))
    assert client.load(other) is None  # expired: not found, not an error
    assert client.exists(other) is True
    assert client.clear_expired() >= 1
    assert client.exists(other) is False
    assert client.delete(other) is False


def test_the_async_client_makes_the_same_calls(make_async_client):
    async def scenario():
        client = make_async_client()
        key = await client.create({"a": 1})
        assert (await client.load(key)).data == {"a": 1}
        assert await client.exists(key)
        await client.save(key, {"a": 2})
        await client.patch(key, set={"b": 3}, remove=["a"])
        assert (await client.load(key)).data == {"b": 3}
        new_key = await client.cycle_key(key, {"c": 4})
        assert not await client.exists(key)
        assert await client.delete(new_key) is True
        assert await client.load(new_key) is None
        assert await client.clear_expired() >= 0
        await client.aclose()

    asyncio.run(scenario())


def test_the_blocking_client_runs_on_the_transport_this_run_expects(client):
    # SESSIOND_EXPECT_TRANSPORT: set by server/tests/python_clients.rs, which
    # runs this suite with the native module and without it.
    expected = required("SESSIOND_EXPECT_TRANSPORT")
    assert client.transport == expected
    assert transport.NATIVE == (expected == "native")


def test_a_transport_that_does_not_exist_is_refused_naming_the_setting(monkeypatch):
    with pytest.raises(ValueError, match="transport must be 'native' or 'grpcio', not 'http'"):
        Client("127.0.0.1:1", transport="http")
    monkeypatch.setenv("SESSIOND_CLIENT_TRANSPORT", "fast")
    with pytest.raises(ValueError, match="SESSIOND_CLIENT_TRANSPORT must be"):
        Client("127.0.0.1:1")
    # Chosen explicitly, grpcio is always there.
    assert Client("127.0.0.1:1", transport="grpcio").transport == "grpcio"
    if not transport.NATIVE:
        with pytest.raises(ValueError, match="not installed"):
            Client("127.0.0.1:1", transport="native")


def connections_to(address):
    """The local ports of this process's established TCP connections to
    the port of ``address`` (``127.0.0.1:PORT``), from Linux's /proc."""
    port = int(address.rsplit(":", 1)[1])
    sockets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            sockets.add(link[len("socket:["):-1])
    ports = set()
    # IPv6 sockets too: grpcio connects to 127.0.0.1 on one (as ::ffff:127.0.0.1).
    for table_path in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table_path) as table:
            for row in table.read().splitlines()[1:]:
                fields = row.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                established = state == "01"
                if established and inode in sockets and int(remote.rsplit(":", 1)[1], 16) == port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not os.path.exists("/proc/self/net/tcp"), reason="reads Linux's /proc")
def test_an_idle_channel_answers_the_servers_pings(address, token):
    # The server pings a connection idle for --keepalive and closes it if
    # the ping goes unanswered for as long again. A client that answered
    # only during its own calls would lose its connection while the app
    # does other work, and open a new one on its next call.
    keepalive = float(required("SESSIOND_KEEPALIVE_SECONDS"))
    others = connections_to(address)
    client = Client(address, token=token)
    try:
        key = client.create({"idle": "soon"})
        ours = connections_to(address) - others
        assert len(ours) == 1, ours
        time.sleep(3.5 * keepalive)
        assert client.load(key).data == {"idle": "soon"}
        assert connections_to(address) - others == ours
    finally:
        client.close()


class CuttingProxy:
    """Forwards TCP connections to ``target`` (``host:port``); ``cut()``
    closes the ones open now, as a restarting server or a proxy that drops
    idle connections does."""

    def __init__(self, target):
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                downstream.close()
                continue
            with self._lock:
                self._open += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def cut(self):
        with self._lock:
            cut, self._open = self._open, []
        for sock in cut:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        # A close alone would not wake the thread blocked in accept().
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self.cut()


@pytest.mark.skipif(not os.path.exists("/proc/self/net/tcp"), reason="reads Linux's /proc")
def test_a_connection_closed_between_calls_is_replaced_not_failed(address, token):
    # The connection ends while the app is between calls; the next call
    # must notice and open a new one, not send its request on the closed
    # one and fail.
    proxy = CuttingProxy(address)
    client = Client(proxy.address, token=token)
    try:
        key = client.create({"cut": "often"})
        for _ in range(5):
            proxy.cut()
            # The close has reached the client's socket (no longer
            # established) before the next call.
            wait_until(lambda: not connections_to(proxy.address), "the close")
            assert client.load(key).data == {"cut": "often"}
    finally:
        client.close()
        proxy.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/net/tcp"), reason="reads Linux's /proc")
def test_threads_sharing_a_client_each_get_their_own_answers(address, token):
    # Calls that overlap share the client's connections: each thread must
    # get the answers to its own calls. The native transport sends a call
    # made alone on one connection and calls that overlap on a second one;
    # grpcio sends all on one.
    threads = 8
    others = connections_to(address)
    client = Client(address, token=token)
    # Bounded: a thread that fails must not leave the others waiting.
    together = threading.Barrier(threads, timeout=30)

    def visits(thread):
        key = client.create({"thread": thread})
        for visit in range(40):
            together.wait()
            client.patch(key, set={"visit": visit})
            assert client.load(key).data == {"thread": thread, "visit": visit}
        return key

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            keys = list(pool.map(visits, range(threads)))
        assert len(set(keys)) == threads
        for thread, key in enumerate(keys):
            assert client.load(key).data == {"thread": thread, "visit": 39}
        expected = 2 if client.transport == "native" else 1
        assert len(connections_to(address) - others) == expected
    finally:
        client.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads Linux's /proc")
def test_closing_a_client_stops_its_threads(address, token):
    # Nothing of a closed client keeps running: no thread of the native
    # transport (its keeper, its runtimes' threads) is left behind.
    def transport_threads():
        found = set()
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/comm") as comm:
                    name = comm.read().strip()
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            if name.startswith("sessiond-"):
                found.add(task)
        return found

    before = transport_threads()
    client = Client(address, token=token)
    key = client.create({"threads": "stopped"})
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: client.load(key), range(200)))
    if client.transport == "native":
        assert transport_threads() - before, "the native transport started no thread"
    client.close()
    del client
    assert transport_threads() - before == set()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_opens_its_own_channel(client):
    # A pre-fork server (gunicorn, uWSGI) imports the app, often calls
    # sessiond, then forks its workers: each must get a working channel,
    # and the parent's must still work.
    key = client.create({"made": "before the fork"})
    child = os.fork()
    if child == 0:
        try:
            ok = client.load(key).data == {"made": "before the fork"}
            client.patch(key, set={"child": True})
            client.close()
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.load(key).data == {"made": "before the fork", "child": True}


def test_refusals_name_the_call_and_the_code_never_the_key(client):
    key = client.create({})
    with pytest.raises(SessiondError) as raised:
        client.save(key, {}, must_create=True)
    assert raised.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert raised.value.rpc == "Save"
    assert "Save" in str(raised.value) and "ALREADY_EXISTS" in str(raised.value)
    assert key not in str(raised.value)

    client.delete(key)
    with pytest.raises(SessiondError) as raised:
        client.patch(key, set={"a": 1})
    assert (raised.value.code, raised.value.rpc) == (grpc.StatusCode.NOT_FOUND, "Patch")
    assert key not in str(raised.value)

    with pytest.raises(SessiondError) as raised:
        client.load("NOT-A-KEY")
    assert (raised.value.code, raised.value.rpc) == (grpc.StatusCode.INVALID_ARGUMENT, "Load")


def test_a_wrong_token_is_refused_and_named(address, token):
    for wrong in (None, "not-the-token-0123456789"):
        client = Client(address, token=wrong)
        with pytest.raises(SessiondError) as raised:
            client.load(UNKNOWN_KEY)
        assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "SESSIOND_TOKEN" in str(raised.value)
        assert token not in str(raised.value)
        client.close()


def test_an_unreachable_sessiond_is_unavailable(token):
    dead = f"127.0.0.1:{closed_port()}"
    client = Client(dead, token=token, timeout=2)
    with pytest.raises(SessiondUnavailable) as raised:
        client.load(UNKNOWN_KEY)
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert raised.value.rpc == "Load"
    assert dead in str(raised.value) and "SESSIOND_ADDRESS" in str(raised.value)
    assert UNKNOWN_KEY not in str(raised.value) and token not in str(raised.value)

    async def scenario():
        with pytest.raises(SessiondUnavailable):
            await AsyncClient(dead, token=token, timeout=2).exists(UNKNOWN_KEY)

    asyncio.run(scenario())


def test_calls_fail_over_to_the_next_address(address, token):
    dead = f"127.0.0.1:{closed_port()}"
    client = Client([dead, address], token=token)
    key = client.create({"a": 1})
    assert client.load(key).data == {"a": 1}
    # Later calls start from the address that answered.
    assert client.addresses[client._preferred] == address

    async def scenario():
        aclient = AsyncClient([dead, address], token=token)
        assert (await aclient.load(key)).data == {"a": 1}
        await aclient.aclose()

    asyncio.run(scenario())


def test_bad_settings_name_the_setting():
    for settings, name in [
        ({"addresses": []}, "SESSIOND_ADDRESS"),
        ({"addresses": ""}, "SESSIOND_ADDRESS"),
        ({"timeout": 0}, "SESSIOND_TIMEOUT"),
        ({"timeout": "5"}, "SESSIOND_TIMEOUT"),
        ({"token": "é"}, "SESSIOND_TOKEN"),
        ({"tls": TlsFiles(cert="c.pem")}, "SESSIOND_TLS_KEY"),
        ({"tls": TlsFiles(ca="/nonexistent/ca.pem")}, "SESSIOND_TLS_CA"),
    ]:
        settings.setdefault("addresses", "127.0.0.1:1")
        addresses = settings.pop("addresses")
        with pytest.raises(ValueError, match=name):
            Client(addresses, **settings)


def test_addresses_must_be_host_port():
    for good in ["127.0.0.1:50051", "localhost:1", "sessiond.internal:65535", "[::1]:50051"]:
        assert Client(good).addresses == (good,)
    for addresses, setting in [
        ("localhost", "SESSIOND_ADDRESS"),  # gRPC would take port 443
        ("http://127.0.0.1:50051", "SESSIOND_ADDRESS"),
        ("127.0.0.1:0", "SESSIOND_ADDRESS"),
        ("127.0.0.1:65536", "SESSIOND_ADDRESS"),
        ("127.0.0.1:", "SESSIOND_ADDRESS"),
        ("::1:50051", "SESSIOND_ADDRESS"),
        ("[127.0.0.1]:50051", "SESSIOND_ADDRESS"),
        ("127.0.0.1:50051/", "SESSIOND_ADDRESS"),
        (["127.0.0.1:50051", "localhost"], "SESSIOND_ADDRESSES"),
    ]:
        bad = addresses if isinstance(addresses, str) else addresses[-1]
        for make in (Client, AsyncClient):
            with pytest.raises(ValueError) as raised:
                make(addresses)
            assert setting in str(raised.value) and repr(bad) in str(raised.value)


def test_a_token_grpc_cannot_send_is_refused_without_echoing_it():
    for token in ["s3cret-t0ken\n", " s3cret-t0ken", "s3cret-t0ken ", "s3cret\tt0ken", "s3cret-tökén"]:
        with pytest.raises(ValueError) as raised:
            Client("127.0.0.1:1", token=token)
        assert "SESSIOND_TOKEN" in str(raised.value)
        assert "s3cret" not in str(raised.value)
    assert Client("127.0.0.1:1", token="s3cret t0ken~!")._metadata is not None
    assert Client("127.0.0.1:1", token="")._metadata is None


def test_values_json_cannot_hold_fail_before_any_call_naming_the_member(client):
    # Nothing listens there: a call would raise SessiondUnavailable.
    dead = Client(f"127.0.0.1:{closed_port()}", timeout=1)
    key = client.create({"n": 1})
    for value, error in [
        (datetime.datetime.now(UTC), TypeError),
        ({1, 2}, TypeError),
        (float("nan"), ValueError),
        (float("-inf"), ValueError),
    ]:
        data = {"fine": 1, "bad": value}
        for send in (
            lambda: dead.create(data),
            lambda: dead.save(key, data),
            lambda: dead.patch(key, set=data),
            lambda: dead.cycle_key(key, data),
        ):
            with pytest.raises(error, match="session member 'bad'"):
                send()
        # The handle, new and loaded: the save fails before its call, and
        # what is stored stays.
        fresh = Session(dead)
        fresh.update(data)
        with pytest.raises(error, match="session member 'bad'"):
            fresh.save()
        loaded = Session(client, key)
        loaded["n"] = value
        with pytest.raises(error, match="session member 'n'"):
            loaded.save()
        assert client.load(key).data == {"n": 1}


def test_tls_with_a_client_certificate():
    tls = TlsFiles(
        ca=required("SESSIOND_TLS_CA"),
        cert=required("SESSIOND_TLS_CERT"),
        key=required("SESSIOND_TLS_KEY"),
    )
    address = required("SESSIOND_TLS_ADDRESS")
    client = Client(address, tls=tls)
    key = client.create({"over": "tls"})
    assert client.load(key).data == {"over": "tls"}

    async def scenario():
        aclient = AsyncClient(address, tls=tls)
        assert (await aclient.load(key)).data == {"over": "tls"}
        await aclient.aclose()

    asyncio.run(scenario())

    # Without the CA, sessiond's certificate is not trusted; without a
    # client certificate, sessiond refuses the connection.
    for untrusted in (TlsFiles(), TlsFiles(ca=tls.ca)):
        with pytest.raises(SessiondUnavailable):
            Client(address, tls=untrusted, timeout=2).load(key)
    with pytest.raises(SessiondUnavailable):
        Client(address, timeout=2).load(key)  # plaintext to a TLS port


def test_data_is_encoded_as_djangos_json_serializer_writes_it():
    assert (
        encode_data({"user": "Zoë", "n": [1, True, None]})
        == '{"user":"Zo\\u00eb","n":[1,true,null]}'
    )
    assert decode_data('{"a":1}') == {"a": 1}
    assert decode_data("[1]") is None and decode_data("not json") is None


def test_a_snapshot_of_loaded_text_sees_changes_made_in_place_after_the_load():
    text = '{"cart":["book"],"n":true,"gone":1}'
    from_text, from_data = Snapshot(decode_data(text), text), Snapshot(decode_data(text))
    # A load that is never saved encodes nothing: that is what the text is for.
    assert from_text._members is None
    for snapshot in (from_text, from_data):
        data = snapshot.data
        data["cart"].append("pen")
        data["n"] = 1  # equal to True in Python, not in JSON
        del data["gone"]
        assert snapshot.changes(data) == ({"cart": ["book", "pen"], "n": 1}, ["gone"], False)
        assert snapshot.changes({}) == ({}, [], True)


def test_a_stored_value_json_here_cannot_write_again_does_not_stop_a_save():
    # sessiond stores 1e400 as written; Python reads it as infinity, which
    # it refuses to write: such a member counts as changed, or as removed.
    text = '{"big":1e400,"a":1}'
    snapshot = Snapshot(decode_data(text), text)
    data = snapshot.data
    data["a"] = 2
    del data["big"]
    assert snapshot.changes(data) == ({"a": 2}, ["big"], False)


def test_key_rule():
    assert is_valid_key("a" * 8) and is_valid_key("0" * 40)
    for bad in ["a" * 7, "a" * 41, "ABCDEFGHIJ", "abc_defgh", None, 12345678]:
        assert not is_valid_key(bad)


def test_naive_expiry_times_are_refused(client):
    with pytest.raises(ValueError, match="timezone-aware"):
        client.create({}, datetime.datetime.now())
