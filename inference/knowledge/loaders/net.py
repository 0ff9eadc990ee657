"""The network side of website sources: which addresses they may reach, and reading a
response body within a bound whatever its compression.

Every connection resolves the host once, checks each address it resolved to, and connects
to the checked address (the name is not resolved again, so a DNS answer cannot change
between the check and the connection). Loopback, link-local (cloud metadata), private,
shared (CGNAT), unique-local, multicast and unspecified addresses are refused unless
``KNOWLEDGE_ALLOW_PRIVATE`` names the host or a network holding the address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses it resolves to, as text.
Resolver = Callable[[str, int], Awaitable[list[str]]]
ACCEPT_ENCODING = "gzip, identity"
_GZIP = {"gzip", "x-gzip"}


class AddressRefused(Exception):
    """A host resolved to an address a source may not reach; the message says what to set."""


@dataclass(frozen=True, slots=True)
class AllowPrivate:
    """Hosts and networks a website source may reach although private."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    def allows(self, host: str, address: Address) -> bool:
        """Whether ``host`` (as written in the URL), resolved to ``address``, may be reached."""
        if host.lower().rstrip(".") in self.hosts:
            return True
        return any(address.version == n.version and address in n for n in self.networks)


def parse_allow_private(value: str) -> AllowPrivate:
    """``KNOWLEDGE_ALLOW_PRIVATE``: comma-separated host names, addresses and networks
    (``wiki.internal, 10.20.0.0/16``); raises ValueError naming a malformed network."""
    hosts: set[str] = set()
    networks: list[Network] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            if "/" in entry or " " in entry:
                raise ValueError(
                    f"KNOWLEDGE_ALLOW_PRIVATE: {entry!r} is not a host or network"
                ) from None
            hosts.add(entry.rstrip("."))
    return AllowPrivate(frozenset(hosts), tuple(networks))


def is_public(address: Address) -> bool:
    """Whether an address is on the public internet (an IPv4-mapped IPv6 address is
    judged as the IPv4 address it carries)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host``."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_address(host: str, port: int, allow: AllowPrivate, resolver: Resolver) -> str:
    """The one address to connect to for ``host``, after checking every address it
    resolves to; ``AddressRefused`` (one line, with the setting to change) otherwise."""
    bare = host.strip("[]")
    try:
        resolved = [ipaddress.ip_address(bare)]
    except ValueError:
        try:
            resolved = [
                ipaddress.ip_address(a.split("%", 1)[0]) for a in await resolver(bare, port)
            ]
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {bare}: {exc}") from exc
    if not resolved:
        raise httpcore.ConnectError(f"{bare} resolves to no address")
    for address in resolved:
        if not is_public(address) and not allow.allows(bare, address):
            raise AddressRefused(
                f"{bare} resolves to {address}, a private or local address (not reached); "
                f"to index it, add {bare} to KNOWLEDGE_ALLOW_PRIVATE"
            )
    return str(resolved[0])


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's own network backend, connecting only to checked addresses."""

    def __init__(self, allow: AllowPrivate, resolver: Resolver) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow = allow
        self._resolver = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await checked_address(host, port, self._allow, self._resolver)
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address,
            socket_options=socket_options,
        )  # fmt: skip

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("unix sockets are not reached")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that reaches only checked addresses (TLS
    still verifies the certificate against the host name, with certifi's CAs or those of
    SSL_CERT_FILE / SSL_CERT_DIR). No proxy from the environment: a proxy would reach the
    addresses this refuses."""

    def __init__(self, allow: AllowPrivate, resolver: Resolver | None = None) -> None:
        super().__init__(trust_env=False)
        # httpx (pinned in requirements.lock) takes no network backend: its pool is
        # replaced by the same pool built over ours (tests/inference/knowledge/test_source_safety.py
        # reaches a server through it, so a changed httpx fails there).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),  # SSL_CERT_FILE/DIR: an intranet's CA
            max_connections=20,
            max_keepalive_connections=10,
            network_backend=_CheckedBackend(allow, resolver or system_resolver),
        )


def encoding_refused(response: httpx.Response) -> str | None:
    """Why a response's ``Content-Encoding`` is refused (one that was not asked for)."""
    codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings or (len(codings) == 1 and codings[0] in _GZIP):
        return None
    return f"compressed as {', '.join(codings)}, which was not asked for"


class TooLarge(Exception):
    """The body, as read or as decompressed, is over its limit."""


async def read_bounded(response: httpx.Response, limit: int) -> bytes:
    """The body, decompressed as its ``Content-Encoding`` (identity or gzip) says, never
    holding more than ``limit`` decoded bytes; ``TooLarge`` past it. Call
    ``encoding_refused`` first."""
    gzip = response.headers.get("content-encoding", "").strip().lower() in _GZIP
    body = bytearray()
    chunks: AsyncIterator[bytes] = response.aiter_raw()
    read = 0
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
    async for chunk in chunks:
        read += len(chunk)
        if read > limit:
            raise TooLarge
        if inflate is None:
            body.extend(chunk)
        else:
            inflate = _inflate(inflate, chunk, body, limit)
        if len(body) > limit:
            raise TooLarge
    return bytes(body)


def _inflate(
    inflate: zlib._Decompress, data: bytes, body: bytearray, limit: int
) -> zlib._Decompress:
    """Decompress ``data`` into ``body``, at most one byte past ``limit`` at a time
    (gzip members one after the other); the decompressor for what follows."""
    while data:
        body.extend(inflate.decompress(data, limit - len(body) + 1))
        if len(body) > limit:
            raise TooLarge
        if inflate.eof:
            data = inflate.unused_data
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        else:
            data = inflate.unconsumed_tail
    return inflate
