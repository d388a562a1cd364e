"""Download sources: httpx for http(s), plain file reads for local snapshots.

``Fetcher.fetch_all`` takes ``FetchRequest``s and returns one ``FetchResult`` per
request, in order, never raising for a single source: network errors, HTTP errors,
timeouts and oversized bodies become ``FetchOutcome.FAILED`` with a readable reason
and an ``error_type``.

Politeness: one shared ``httpx.AsyncClient``; a global concurrency limit and a
per-host one; a minimum gap between request starts to one host; conditional GET with
the stored ETag / Last-Modified; a host that answers 429/503 with Retry-After is left
alone until then (requests still queued for it come back ``DEFERRED``).

Limits that hold against hostile servers: connect and read timeouts plus a total
deadline per request (a server dribbling one byte a second is cut there), a body cap
counted after decompression (a gzip bomb stops early), at most 5 redirects, and no
private, loopback or link-local address, nor one embedding such an IPv4 address
(NAT64, 6to4), unless settings allow it (checked on the
resolved address of every hop, redirects included).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from aggregator.config import FetchSettings
from aggregator.models import FetchOutcome, FetchResult, Validators
from aggregator.schedule import retry_after

_KEPT_HEADERS = (
    "content-type",
    "content-location",
    "content-language",
    "cache-control",
    "expires",
    "retry-after",
)
MAX_REDIRECTS = 5
_PERMANENT_REDIRECTS = frozenset({301, 308})
_RETRY_LATER = frozenset({429, 503})
_ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.1"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchRequest:
    source_id: str
    #: An http(s) URL, or an absolute path of a local snapshot file.
    url: str
    validators: Validators = field(default_factory=Validators)

    @property
    def is_local(self) -> bool:
        return not self.url.lower().startswith(("http://", "https://"))


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class Backlog:
    """Fetched results handed on and not yet consumed, at most ``size``: the fetching
    loop waits for room without spinning (an asyncio semaphore), and the consuming
    thread makes room with ``release``, thread-safely.

    Polling a thread semaphore from every waiting request instead kept 2,000 timers
    firing every few milliseconds: the loop took a whole core and starved the thread
    storing the results."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room: asyncio.Semaphore | None = None

    def bind(self) -> None:
        """Called by the fetching loop before its first ``acquire``."""
        self._loop = asyncio.get_running_loop()
        self._room = asyncio.Semaphore(self.size)

    async def acquire(self) -> None:
        assert self._room is not None, "bind() first"
        await self._room.acquire()

    def release(self, count: int = 1) -> None:
        """From any thread: ``count`` results were consumed."""
        loop, room = self._loop, self._room
        if loop is None or room is None:
            return
        for _ in range(count):
            try:
                loop.call_soon_threadsafe(room.release)
            except RuntimeError:  # the loop is closed: fetching is over
                return


class ForbiddenAddressError(httpx.TransportError):
    """The host resolves to a private, loopback or link-local address."""


class _HostGate:
    """Per-host politeness inside one fetch round: slots, gaps and Retry-After blocks."""

    def __init__(self, settings: FetchSettings, blocked: dict[str, datetime]) -> None:
        self._settings = settings
        self.blocked = dict(blocked)
        self._slots: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.per_host)
        )
        self._last_start: dict[str, float] = {}

    def slot(self, host: str) -> asyncio.Semaphore:
        return self._slots[host]

    async def wait_turn(self, host: str) -> None:
        """Sleep until ``per_host_delay`` has passed since the last request to ``host``."""
        now = time.monotonic()
        last = self._last_start.get(host)
        start = now if last is None else max(now, last + self._settings.per_host_delay)
        # Book the start time before sleeping, so concurrent waiters queue up in turn.
        self._last_start[host] = start
        if start > now:
            await asyncio.sleep(start - now)

    def blocked_until(self, host: str) -> datetime | None:
        until = self.blocked.get(host)
        return until if until and until > datetime.now(UTC) else None


#: IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, RFC 6052 and
#: RFC 8215), which ``is_global`` judges by the IPv6 prefix alone.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is global unicast, and so is any IPv4 address it embeds
    (IPv4-mapped, NAT64, 6to4, Teredo): ``[64:ff9b::7f00:1]`` reaches 127.0.0.1."""
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return True
    embedded: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    if any(address in net for net in _NAT64):
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return all(is_public_address(inner) for inner in embedded)


class _GuardedTransport(httpx.AsyncBaseTransport):
    """Refuses hosts resolving to non-public addresses, on every request and redirect hop.

    The address is resolved here and again when connecting, so a DNS answer changing in
    between (rebinding) is not caught; this guards against configuration mistakes and
    redirects into the operator's network, not a hostile DNS server."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
            addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        for address in addresses:
            if not is_public_address(address):
                raise ForbiddenAddressError(
                    f"{host} resolves to the non-public address {address} "
                    "(set fetch.allow_private_addresses to allow it)",
                    request=request,
                )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class Fetcher:
    """Fetches many sources concurrently within the configured limits."""

    def __init__(
        self,
        settings: FetchSettings,
        user_agent: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._user_agent = user_agent
        self._transport = transport  # tests may inject one; production uses the default

    def fetch_all(
        self,
        requests: Sequence[FetchRequest],
        *,
        blocked_hosts: dict[str, datetime] | None = None,
        on_result: Callable[[int, FetchResult], FetchResult] | None = None,
        backlog: Backlog | None = None,
    ) -> list[FetchResult]:
        """Fetch every request; results are in the same order as ``requests``.

        ``blocked_hosts`` maps host -> time before which it must not be contacted.
        ``on_result(index, result)`` sees each result as soon as it is in (from the
        fetching thread) and returns what to keep in the list (say, without the body it
        handed on). ``backlog``: a request starts only when there is room in it, which
        whoever consumes ``on_result``'s output makes; it keeps bodies waiting for a
        busy consumer from filling memory."""
        return asyncio.run(
            self.fetch_all_async(
                requests, blocked_hosts=blocked_hosts or {}, on_result=on_result, backlog=backlog
            )
        )

    async def fetch_all_async(
        self,
        requests: Sequence[FetchRequest],
        *,
        blocked_hosts: dict[str, datetime],
        on_result: Callable[[int, FetchResult], FetchResult] | None = None,
        backlog: Backlog | None = None,
    ) -> list[FetchResult]:
        settings = self._settings
        if backlog is not None:
            backlog.bind()
        timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.deadline,
        )
        transport = self._transport or httpx.AsyncHTTPTransport(
            # Every connection may stay open for the next request: httpx keeps 20 by
            # default and closed the rest of the 32 after each response.
            limits=httpx.Limits(
                max_connections=settings.concurrency,
                max_keepalive_connections=settings.concurrency,
            )
        )
        if not settings.allow_private_addresses:
            transport = _GuardedTransport(transport)
        global_slots = asyncio.Semaphore(settings.concurrency)
        gate = _HostGate(settings, blocked_hosts)
        async with httpx.AsyncClient(
            # Only encodings _BoundedDecoder can inflate within the body cap.
            headers={
                "User-Agent": self._user_agent,
                "Accept": _ACCEPT,
                "Accept-Encoding": "gzip, deflate",
            },
            timeout=timeout,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            transport=transport,
        ) as client:

            async def one(index: int, request: FetchRequest) -> FetchResult:
                if backlog is not None:
                    await backlog.acquire()  # the consumer is behind: wait for room
                result = await fetch(request)
                return on_result(index, result) if on_result is not None else result

            async def fetch(request: FetchRequest) -> FetchResult:
                if request.is_local:
                    return await asyncio.to_thread(_read_local, request, settings.max_body)
                host = host_of(request.url)
                # Host slot first: requests queued for a busy host must not hold global slots.
                async with gate.slot(host), global_slots:
                    if until := gate.blocked_until(host):
                        return _result(
                            request, time.monotonic(), FetchOutcome.DEFERRED,
                            host_blocked_until=until, validators=request.validators,
                        )  # fmt: skip
                    await gate.wait_turn(host)
                    result = await self._fetch_http(client, request)
                    if result.host_blocked_until:
                        gate.blocked[host] = result.host_blocked_until
                    return result

            return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))

    async def _fetch_http(self, client: httpx.AsyncClient, request: FetchRequest) -> FetchResult:
        started = time.monotonic()
        headers = {}
        if request.validators.etag:
            headers["If-None-Match"] = request.validators.etag
        if request.validators.last_modified:
            headers["If-Modified-Since"] = request.validators.last_modified
        conditional = bool(headers)

        def failed(reason: str, kind: str, **fields: Any) -> FetchResult:
            fields.setdefault("conditional", conditional)
            return _result(
                request, started, FetchOutcome.FAILED, error=reason, error_type=kind, **fields
            )

        try:
            async with asyncio.timeout(self._settings.deadline):
                async with client.stream("GET", request.url, headers=headers) as response:
                    status = response.status_code
                    kept = tuple(
                        (name, response.headers[name])
                        for name in _KEPT_HEADERS
                        if name in response.headers
                    )
                    moved = {
                        "redirected_to": str(response.url) if response.history else None,
                        "redirect_permanent": bool(response.history)
                        and all(r.status_code in _PERMANENT_REDIRECTS for r in response.history),
                        "headers": kept,
                        "status": status,
                        "conditional": conditional,
                        "final_url": str(response.url),
                    }
                    if status == 304:
                        await _drain(response)
                        return _result(
                            request, started, FetchOutcome.NOT_MODIFIED,
                            # A 304 may carry fresh validators (RFC 9110 15.4.5); keep them.
                            validators=_validators(response.headers, request.validators),
                            **moved,
                        )  # fmt: skip
                    if status >= 400 or status < 200:
                        await _drain(response)
                        blocked = None
                        if status in _RETRY_LATER:
                            blocked = retry_after(response.headers.get("retry-after"), _now())
                        reason = f"HTTP {status} {response.reason_phrase}".strip()
                        return failed(reason, "http", host_blocked_until=blocked, **moved)
                    limit = self._settings.max_body
                    decoder = _BoundedDecoder(response.headers.get("content-encoding"), limit)
                    async for chunk in response.aiter_raw():
                        decoder.feed(chunk)
                        if decoder.exceeded:
                            return failed(f"body larger than {limit} bytes", "too_large", **moved)
                    body = decoder.finish()
                    return _result(
                        request, started, FetchOutcome.OK, body=body,
                        validators=_validators(response.headers, Validators()), **moved,
                    )  # fmt: skip
        except TimeoutError:
            deadline = self._settings.deadline
            return failed(f"no complete response within the {deadline:g}s deadline", "timeout")
        except httpx.ConnectTimeout:
            return failed("connection timed out", "timeout")
        except httpx.ReadTimeout:
            return failed("read timed out", "timeout")
        except httpx.TooManyRedirects:
            return failed(f"more than {MAX_REDIRECTS} redirects (or a redirect loop)", "redirects")
        except ForbiddenAddressError as exc:
            return failed(str(exc), "forbidden_address")
        except (httpx.DecodingError, zlib.error, _UnsupportedEncodingError) as exc:
            return failed(f"undecodable response body: {exc}", "decoding")
        except httpx.HTTPError as exc:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return failed(message, "network")


#: A body left unread closes its connection; one this small is read so the connection
#: serves the host's next request (a 304 has none; error pages are short).
DRAIN_LIMIT = 64 * 1024


async def _drain(response: httpx.Response) -> None:
    """Read a response we do not need to its end, when it is short: httpx closes the
    connection of a response left unread, and every 304 of a cycle opened a new one."""
    size = 0
    try:
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > DRAIN_LIMIT:
                return
    except (httpx.StreamError, httpx.HTTPError):
        return  # already read, or the connection broke: the answer is known anyway


class _UnsupportedEncodingError(ValueError):
    pass


class _BoundedDecoder:
    """Inflates gzip/deflate bodies ourselves, never past ``limit`` bytes.

    httpx inflates each network chunk whole, so one 64 KB chunk of a gzip bomb becomes
    ~64 MB before any size check; ``max_length`` stops inflating at the cap instead."""

    def __init__(self, encoding: str | None, limit: int) -> None:
        kind = (encoding or "identity").strip().lower()
        if kind in ("gzip", "x-gzip"):
            self._inflater: Any = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        elif kind == "deflate":
            self._inflater = _DEFLATE_UNDECIDED
        elif kind == "identity":
            self._inflater = None
        else:
            raise _UnsupportedEncodingError(f"unsupported Content-Encoding {encoding!r}")
        self._limit = limit
        self._body = bytearray()
        self._head = bytearray()  # deflate: bytes seen before the format is known

    @property
    def exceeded(self) -> bool:
        return len(self._body) > self._limit

    def feed(self, chunk: bytes) -> None:
        if self._inflater is None:
            self._body += chunk
            return
        if self._inflater is _DEFLATE_UNDECIDED:
            self._head += chunk
            if len(self._head) < 2:
                return
            self._inflater = _deflate_inflater(self._head)
            chunk, self._head = bytes(self._head), bytearray()
        data = chunk
        while data and not self.exceeded:
            room = self._limit - len(self._body) + 1
            self._body += self._inflater.decompress(data, room)
            data = self._inflater.unconsumed_tail

    def finish(self) -> bytes:
        if self._inflater is _DEFLATE_UNDECIDED:  # a body of fewer than 2 bytes
            if self._head:
                raise zlib.error("truncated deflate stream")
            return b""
        if self._inflater is not None and not self.exceeded:
            self._body += self._inflater.flush()
        return bytes(self._body)


_DEFLATE_UNDECIDED = object()


def _deflate_inflater(head: bytes | bytearray) -> Any:
    """``Content-Encoding: deflate`` means zlib-wrapped (RFC 9110 8.4.1.2), but some
    servers send raw deflate, which browsers and feedparser accept: tell them apart by
    the zlib header (method 8, check bits), as browsers do; gzip is accepted too."""
    if head[:2] == b"\x1f\x8b":
        return zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    if head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0:
        return zlib.decompressobj(wbits=zlib.MAX_WBITS)
    return zlib.decompressobj(wbits=-zlib.MAX_WBITS)


def _now() -> datetime:
    return datetime.now(UTC)


def _result(
    request: FetchRequest, started: float, outcome: FetchOutcome, **fields: Any
) -> FetchResult:
    """A FetchResult for ``request``; failures keep the validators we sent."""
    if outcome is FetchOutcome.FAILED:
        fields.setdefault("validators", request.validators)
    return FetchResult(
        source_id=request.source_id,
        url=request.url,
        outcome=outcome,
        duration=time.monotonic() - started,
        **fields,
    )


def _validators(headers: httpx.Headers, fallback: Validators) -> Validators:
    return Validators(
        etag=headers.get("etag") or fallback.etag,
        last_modified=headers.get("last-modified") or fallback.last_modified,
    )


def _read_local(request: FetchRequest, max_body: int) -> FetchResult:
    """Read a snapshot file, treating its mtime and size like an ETag."""
    started = time.monotonic()
    path = Path(request.url)
    try:
        stat = path.stat()
        validators = Validators(
            etag=f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
            last_modified=formatdate(stat.st_mtime, usegmt=True),
        )
        if validators.etag == request.validators.etag:
            return _result(
                request,
                started,
                FetchOutcome.NOT_MODIFIED,
                validators=validators,
                final_url=path.as_uri(),
                conditional=True,
            )
        if stat.st_size > max_body:
            raise OSError(f"file larger than {max_body} bytes")
        body = path.read_bytes()
    except OSError as exc:
        reason = f"cannot read snapshot: {exc.strerror or exc}"
        return _result(request, started, FetchOutcome.FAILED, error=reason, error_type="file")
    return _result(
        request,
        started,
        FetchOutcome.OK,
        body=body,
        validators=validators,
        final_url=path.as_uri(),
        conditional=bool(request.validators.etag),
    )
