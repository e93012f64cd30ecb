"""Real llmcache servers for the tests: `node dist/src/cli/main.js serve`.

Each server is started once per session on port 0 and stopped with
SIGTERM at its end. The server is built by `npm run build` (npm test and
CI build it); a missing build fails the tests rather than skipping them.

Servers on Redis (replicas of one cache, and the behaviour tests' servers
on each store) use the Redis that CI started and names in
LLMCACHE_TEST_REDIS, or else one of the session's own (redis-server, which
must be installed then); those on a Redis Cluster use the cluster named in
LLMCACHE_TEST_REDIS_CLUSTER, or else one that scripts/redis-up.sh starts for
the session. Other test processes may share these, so tests there keep to
namespaces of their own and never clear all of them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from llmcache import CacheClient

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "dist" / "src" / "cli" / "main.js"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0

TOKEN = "python-tests-token"
# May read every namespace, and nothing else.
READER_TOKEN = "python-tests-reader-token"
# TOKEN gives every right in every namespace.
AUTH_FILE = """\
tokens:
  - name: python-tests
    sha256: {sha256}
    read: ["*"]
    write: ["*"]
    clear: true
    stats: true
  - name: python-tests-reader
    sha256: {reader_sha256}
    read: ["*"]
"""


@dataclass
class Server:
    """A server process, the "host:port" it listens on, and its metrics port."""

    process: subprocess.Popen[str]
    address: str
    log: Path
    metrics_port: int | None = None

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_servers(count: int, *args: str) -> list[Server]:
    """Starts `count` servers with the same arguments at once (each takes seconds)."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: start_server(*args), range(count)))


def start_server(*args: str, port: int = 0) -> Server:
    """Starts `llmcache serve --port PORT ARGS` and waits for its listening line."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the tests need it to run the server")
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: build the server first (npm run build)")
    log = Path(tempfile.mkstemp(prefix="llmcache-server-", suffix=".log")[1])
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [node, str(CLI), "serve", "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )
    lines: list[str] = []
    listening = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        with process.stdout:  # closed once the server has exited
            for line in process.stdout:
                lines.append(line)
                if line.startswith("llmcache listening on "):
                    listening.set()

    threading.Thread(target=read, daemon=True).start()
    if not listening.wait(START_TIMEOUT):
        process.kill()
        process.wait()
        pytest.fail(f"the server did not start: {''.join(lines)}{log.read_text()}")
    # "llmcache listening on HOST:PORT", and " (metrics on port N)" if asked
    line = next(line for line in lines if line.startswith("llmcache listening on "))
    metrics = re.search(r"\(metrics on port (\d+)\)", line)
    metrics_port = int(metrics.group(1)) if metrics else None
    return Server(process, line.split()[3], log, metrics_port)


@dataclass
class Redis:
    """A redis-server process of the tests' own, and its redis:// URL."""

    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as in a crash, and waits for the process to be gone."""
        self.process.kill()
        self.process.wait()


def start_redis(directory: Path) -> Redis:
    """Starts an empty, unpersisted redis-server on a free loopback port."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.fail(
            "redis-server is not on PATH: set LLMCACHE_TEST_REDIS or install it"
        )
    port = free_port()
    command = [
        redis_server, "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no", "--dir", str(directory),
        "--logfile", "redis.log",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    return Redis(process, f"redis://127.0.0.1:{port}")
        except OSError:
            time.sleep(0.02)
    process.kill()
    process.wait()
    log = directory / "redis.log"
    pytest.fail(
        f"redis-server did not start on port {port}:"
        f" {log.read_text() if log.exists() else ''}"
    )


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis for servers to share: LLMCACHE_TEST_REDIS's, or the session's own."""
    url = os.environ.get("LLMCACHE_TEST_REDIS")
    if url:
        yield url
        return
    redis = start_redis(tmp_path_factory.mktemp("redis"))
    yield redis.url
    redis.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster: LLMCACHE_TEST_REDIS_CLUSTER's, or the session's own."""
    url = os.environ.get("LLMCACHE_TEST_REDIS_CLUSTER")
    if url:
        yield url
        return
    directory = tmp_path_factory.mktemp("redis-up")
    try:
        made = subprocess.run(
            ["bash", str(REPO / "scripts" / "redis-up.sh"), str(directory)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if made.returncode != 0:
            pytest.fail(f"scripts/redis-up.sh failed: {made.stderr.strip()}")
        lines = (directory / "env").read_text().splitlines()
        env = {key: value for key, _, value in (line.partition("=") for line in lines)}
        yield env["LLMCACHE_TEST_REDIS_CLUSTER"]
    finally:  # also what a redis-up.sh that timed out had started
        subprocess.run(
            ["bash", str(REPO / "scripts" / "redis-down.sh"), str(directory)],
            capture_output=True,
            check=False,
            timeout=60,
        )


# The stores a server can keep its entries in, as the behaviour tests' ids.
STORES = ["memory", "redis", "redis-cluster"]


def server_on_store(request: pytest.FixtureRequest, *args: str) -> Server:
    """Starts `llmcache serve ARGS --store URL` on the Redis named by request.param."""
    store: str = request.param
    url_fixture = {"redis": "redis_url", "redis-cluster": "redis_cluster_url"}[store]
    url: str = request.getfixturevalue(url_fixture)
    return start_server(*args, "--store", url)


@pytest.fixture(scope="session", params=STORES, ids=STORES)
def store_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """`server`, and a server with its settings on Redis and on a Redis Cluster.

    For the tests of what every store does alike. On Redis, a namespace's
    statistics count no entries nor bytes (the total has Redis's), and the
    settings that bound the memory store (maxsize, max-bytes, ...) are
    refused: tests of those stay on `server` or `limited_server`.
    """
    if request.param == "memory":
        yield request.getfixturevalue("server")
        return
    started = server_on_store(request)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """A server with the default settings: no limits, no TTL, no tokens."""
    started = start_server()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def limited_server() -> Iterator[Server]:
    """A server with a 64 KiB byte budget and a 300 ms default TTL."""
    started = start_server("--max-bytes", "64KiB", "--default-ttl", "300ms")
    yield started
    started.stop()


@pytest.fixture(scope="session", params=STORES, ids=STORES)
def default_ttl_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server with a 300 ms default TTL on each store (in memory: `limited_server`)."""
    if request.param == "memory":
        yield request.getfixturevalue("limited_server")
        return
    started = server_on_store(request, "--default-ttl", "300ms")
    yield started
    started.stop()


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that requires TOKEN (or READER_TOKEN, to read only)."""
    auth_file = tmp_path_factory.mktemp("auth") / "auth.yaml"
    sha256 = hashlib.sha256(TOKEN.encode()).hexdigest()
    reader_sha256 = hashlib.sha256(READER_TOKEN.encode()).hexdigest()
    auth_file.write_text(AUTH_FILE.format(sha256=sha256, reader_sha256=reader_sha256))
    started = start_server("--auth-file", str(auth_file))
    yield started
    started.stop()


@dataclass
class Certificates:
    ca: Path
    server: Path
    server_key: Path


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA and a certificate for localhost and 127.0.0.1 signed by it."""
    directory = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(
            ["openssl", *args], cwd=directory, check=True, capture_output=True
        )

    for name in ("ca", "server"):
        openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", f"{name}-key.pem",
        )  # fmt: skip
    openssl(
        "req", "-x509", "-new", "-key", "ca-key.pem", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=llmcache python test CA",
    )  # fmt: skip
    openssl(
        "req", "-new", "-key", "server-key.pem", "-out", "server.csr",
        "-subj", "/CN=localhost",
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
        "-CAcreateserial", "-out", "server.pem", "-days", "2",
        "-extfile", "server.ext",
    )  # fmt: skip
    return Certificates(
        directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    )


@pytest.fixture(scope="session")
def tls_server(certificates: Certificates) -> Iterator[Server]:
    """A server that speaks TLS only."""
    started = start_server(
        "--tls-cert",
        str(certificates.server),
        "--tls-key",
        str(certificates.server_key),
    )
    yield started
    started.stop()


@pytest.fixture
def namespace() -> str:
    """A namespace of the test's own, so that tests never see each other's entries."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def client(server: Server, namespace: str) -> Iterator[CacheClient]:
    """A client of `server` whose calls go to the test's namespace."""
    with CacheClient(server.address, namespace=namespace) as made:
        yield made


@pytest.fixture
def dead_address() -> str:
    """A loopback address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


def free_port() -> int:
    """A loopback port where nothing listens now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
