"""WebSub (https://www.w3.org/TR/websub/): tell the hub which feeds changed.

A publish ping is a form-encoded POST ``hub.mode=publish&hub.url=<feed>``; a 2xx answer
means the hub took it. Failures are retried with exponential backoff and then logged:
a hub being down never fails a cycle (subscribers still poll).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import httpx

log = logging.getLogger(__name__)

ATTEMPTS = 4
FIRST_BACKOFF_SECONDS = 1.0


def ping_hub(
    hub: str,
    feed_urls: Sequence[str],
    *,
    user_agent: str,
    attempts: int = ATTEMPTS,
    backoff: float = FIRST_BACKOFF_SECONDS,
    timeout: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> list[str]:
    """Ping ``hub`` for every URL; return the URLs the hub never accepted."""
    failed = []
    with httpx.Client(
        headers={"User-Agent": user_agent}, timeout=timeout, transport=transport
    ) as client:
        for url in feed_urls:
            for attempt in range(1, attempts + 1):
                try:
                    response = client.post(hub, data={"hub.mode": "publish", "hub.url": url})
                    if response.is_success:
                        log.info("websub ping accepted hub=%s url=%s", hub, url)
                        break
                    reason = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                if attempt == attempts:
                    log.warning("websub ping failed hub=%s url=%s: %s", hub, url, reason)
                    failed.append(url)
                else:
                    sleep(backoff * 2 ** (attempt - 1))
    return failed
