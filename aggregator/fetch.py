"""Download sources: httpx for http(s), plain file reads for local snapshots.

``Fetcher.fetch_all`` takes ``FetchRequest``s and returns one ``FetchResult`` per
request, in order, never raising for a single source: network errors, HTTP errors,
timeouts and oversized bodies become ``FetchOutcome.FAILED`` with a readable reason.

Politeness and limits: one shared ``httpx.AsyncClient``, a global concurrency limit and
a per-host one, conditional GET with the stored ETag / Last-Modified, connect and read
timeouts plus a total deadline per request (so a server trickling bytes cannot hold a
slot forever), and a body cap counted after decompression.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from aggregator.config import FetchSettings
from aggregator.models import FetchOutcome, FetchResult, Validators

_KEPT_HEADERS = ("content-type", "content-location", "content-language")
MAX_REDIRECTS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchRequest:
    source_id: str
    #: An http(s) URL, or an absolute path of a local snapshot file.
    url: str
    validators: Validators = field(default_factory=Validators)

    @property
    def is_local(self) -> bool:
        return not self.url.lower().startswith(("http://", "https://"))


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

    def fetch_all(self, requests: Sequence[FetchRequest]) -> list[FetchResult]:
        """Fetch every request; results are in the same order as ``requests``."""
        return asyncio.run(self.fetch_all_async(requests))

    async def fetch_all_async(self, requests: Sequence[FetchRequest]) -> list[FetchResult]:
        settings = self._settings
        timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.deadline,
        )
        limits = httpx.Limits(max_connections=settings.concurrency)
        global_slots = asyncio.Semaphore(settings.concurrency)
        host_slots: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.per_host)
        )
        async with httpx.AsyncClient(
            headers={"User-Agent": self._user_agent, "Accept": _ACCEPT},
            timeout=timeout,
            limits=limits,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            transport=self._transport,
        ) as client:

            async def one(request: FetchRequest) -> FetchResult:
                if request.is_local:
                    return await asyncio.to_thread(_read_local, request, settings.max_body)
                host = (urlsplit(request.url).hostname or "").lower()
                # Host slot first: requests queued for a busy host must not hold global slots.
                async with host_slots[host], global_slots:
                    return await self._fetch_http(client, request)

            return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _fetch_http(self, client: httpx.AsyncClient, request: FetchRequest) -> FetchResult:
        started = time.monotonic()
        headers = {}
        if request.validators.etag:
            headers["If-None-Match"] = request.validators.etag
        if request.validators.last_modified:
            headers["If-Modified-Since"] = request.validators.last_modified

        def failed(reason: str, status: int | None = None) -> FetchResult:
            return _result(request, started, FetchOutcome.FAILED, status=status, error=reason)

        try:
            async with asyncio.timeout(self._settings.deadline):
                async with client.stream("GET", request.url, headers=headers) as response:
                    status = response.status_code
                    if status == 304:
                        return _result(
                            request,
                            started,
                            FetchOutcome.NOT_MODIFIED,
                            status=status,
                            # A 304 may carry fresh validators (RFC 9110 15.4.5); keep them.
                            validators=_validators(response.headers, request.validators),
                            final_url=str(response.url),
                        )
                    if status >= 400 or status < 200:
                        return failed(f"HTTP {status} {response.reason_phrase}".strip(), status)
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self._settings.max_body:
                            return failed(
                                f"body larger than {self._settings.max_body} bytes", status
                            )
                    return _result(
                        request,
                        started,
                        FetchOutcome.OK,
                        status=status,
                        body=bytes(body),
                        headers=tuple(
                            (name, response.headers[name])
                            for name in _KEPT_HEADERS
                            if name in response.headers
                        ),
                        validators=_validators(response.headers, Validators()),
                        final_url=str(response.url),
                    )
        except TimeoutError:
            return failed(f"no complete response within the {self._settings.deadline:g}s deadline")
        except httpx.ConnectTimeout:
            return failed("connection timed out")
        except httpx.ReadTimeout:
            return failed("read timed out")
        except httpx.TooManyRedirects:
            return failed(f"more than {MAX_REDIRECTS} redirects")
        except httpx.DecodingError as exc:
            return failed(f"undecodable response body: {exc}")
        except httpx.HTTPError as exc:
            return failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


_ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.1"
)


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
            )
        if stat.st_size > max_body:
            raise OSError(f"file larger than {max_body} bytes")
        body = path.read_bytes()
    except OSError as exc:
        reason = f"cannot read snapshot: {exc.strerror or exc}"
        return _result(request, started, FetchOutcome.FAILED, error=reason)
    return _result(
        request,
        started,
        FetchOutcome.OK,
        body=body,
        validators=validators,
        final_url=path.as_uri(),
    )
