"""When to poll a source next, and what a poll teaches us about it.

Pure: ``plan_poll`` takes the stored ``SourceState``, the ``FetchResult`` and what the
pipeline learned (parse error, feed ttl, recent posting rate) and returns the
``PollUpdate`` storage writes. ``now`` and the random source are passed in, so tests
control time and jitter.

    next check = now + clamp(max(base interval, feed ttl, Cache-Control max-age, Expires,
                                 Retry-After, error backoff), min, max) + jitter

``base`` is the source's configured ``interval``; else, with ``schedule.adaptive`` on
and a week of history (its first successful poll at least 7 days ago), the adaptive
one (7 days / items of the last week, ``max_interval`` when there were none); else
``poll_interval``. A failing source backs off exponentially (``error_backoff``,
doubling up to ``error_backoff_cap``) and keeps being probed there; it is never
dropped. A source that was never read, or was first read less than a week ago, is
retried on the backoff alone, so a new source whose first poll fails is tried again
in 5 minutes, not when its interval is up. A 410 Gone source is probed every
``gone_interval``. A permanent redirect seen on K polls in a row is followed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from aggregator.config import ScheduleSettings
from aggregator.models import FetchOutcome, FetchResult, PollUpdate, SourceState

WEEK_SECONDS = 7 * 86400.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?", re.I)


def adaptive_interval(items_last_week: int, settings: ScheduleSettings) -> float:
    """Poll about once per new item a week would bring (Miniflux's rule), within bounds."""
    if items_last_week <= 0:
        return settings.max_interval
    return _clamp(WEEK_SECONDS / items_last_week, settings)


def error_backoff(consecutive_errors: int, settings: ScheduleSettings) -> float:
    """0 without errors; then base, 2x base, 4x base ... up to the cap."""
    if consecutive_errors <= 0:
        return 0.0
    exponent = min(consecutive_errors - 1, 32)  # 2**32 x base is past any cap
    return float(min(settings.error_backoff * 2**exponent, settings.error_backoff_cap))


def retry_after(value: str | None, now: datetime) -> datetime | None:
    """The moment a Retry-After header (seconds or an HTTP date) points to."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return now + timedelta(seconds=int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(moment, now)


def cache_lifetime(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds the response may be cached: Cache-Control max-age, else Expires."""
    if match := _MAX_AGE.search(headers.get("cache-control", "")):
        return float(match.group(1))
    if expires := headers.get("expires"):
        try:
            moment = parsedate_to_datetime(expires)
        except (TypeError, ValueError, IndexError):
            return None  # RFC 9111: an invalid Expires means "already expired"
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, (moment - now).total_seconds())
    return None


def has_history(state: SourceState | None, now: datetime) -> bool:
    """Whether the source was first read a week ago or more: only then does the count
    of its items of the last week say how often it posts."""
    first = state.first_success_at if state is not None else None
    return first is not None and (now - first).total_seconds() >= WEEK_SECONDS


def base_interval(
    configured: float | None,
    default: float,
    items_last_week: int,
    settings: ScheduleSettings,
    *,
    history: bool = True,
) -> float:
    """The source's interval before hints and backoff: configured, else adaptive when
    it has ``history``, else the default (``poll_interval``)."""
    if configured is not None:
        return configured
    if settings.adaptive and history:
        return adaptive_interval(items_last_week, settings)
    return default


def plan_poll(
    *,
    state: SourceState,
    result: FetchResult,
    base: float,
    settings: ScheduleSettings,
    now: datetime,
    rng: random.Random,
    parse_error: str | None = None,
    problem_type: str = "parse",
    ttl_minutes: int | None = None,
    body_hash: str | None = None,
) -> PollUpdate:
    """The source's new state after ``result`` (and the parse that followed it)."""
    headers = dict(result.headers)
    if result.outcome is FetchOutcome.DEFERRED:
        until = result.host_blocked_until or now
        wait = max((until - now).total_seconds(), 0.0)
        return _update(
            state, result, now, rng, settings,
            interval=state.interval or base, wait=wait, polled=False,
            error_count=state.error_count, gone=state.gone,
        )  # fmt: skip

    error = parse_error or (result.error if result.outcome is FetchOutcome.FAILED else None)
    # Without a week of history the base says little: a failure waits the backoff only.
    waits = [base] if not error or has_history(state, now) else []
    if result.host_blocked_until:
        waits.append((result.host_blocked_until - now).total_seconds())
    if error:
        error_count = state.error_count + 1
        gone = result.status == 410
        waits.append(error_backoff(error_count, settings))
        interval = settings.gone_interval if gone else _clamp(max(waits), settings)
    else:
        error_count, gone = 0, False
        if ttl_minutes:
            waits.append(ttl_minutes * 60.0)
        if (lifetime := cache_lifetime(headers, now)) is not None:
            waits.append(lifetime)
        interval = _clamp(max(waits), settings)
    return _update(
        state, result, now, rng, settings,
        interval=interval, wait=interval, polled=True, error_count=error_count, gone=gone,
        error=error, error_type=problem_type if parse_error else result.error_type,
        body_hash=body_hash,
    )  # fmt: skip


def _update(
    state: SourceState,
    result: FetchResult,
    now: datetime,
    rng: random.Random,
    settings: ScheduleSettings,
    *,
    interval: float,
    wait: float,
    polled: bool,
    error_count: int,
    gone: bool,
    error: str | None = None,
    error_type: str | None = None,
    body_hash: str | None = None,
) -> PollUpdate:
    target, count = _redirect_state(state, result, settings)
    succeeded = polled and error is None
    jitter = rng.uniform(0.0, settings.jitter) * wait
    outcome = FetchOutcome.FAILED if error else result.outcome
    return PollUpdate(
        source_id=state.source_id,
        outcome=outcome,
        status=result.status,
        error=error,
        error_type=error_type,
        # Validators only advance on success: after a failure the next request must
        # not be answered with a 304 for a body we never managed to read.
        validators=result.validators if succeeded else None,
        body_hash=body_hash if succeeded else None,
        error_count=error_count,
        interval=interval,
        next_check_at=now + timedelta(seconds=wait + jitter),
        redirect_target=target,
        redirect_count=count,
        gone=gone,
        unconditional=polled and not result.conditional,
        polled=polled,
        host_blocked_until=result.host_blocked_until,
    )


def _redirect_state(
    state: SourceState, result: FetchResult, settings: ScheduleSettings
) -> tuple[str | None, int]:
    """Count consecutive polls that ended at the same permanent-redirect target."""
    following = state.redirect_count >= settings.redirect_confirmations
    if result.outcome is FetchOutcome.DEFERRED:
        return state.redirect_target, state.redirect_count
    if result.redirected_to is None:
        # Reached the URL directly: the move is confirmed (we poll the target) or over.
        if following or result.outcome is FetchOutcome.FAILED:
            return state.redirect_target, state.redirect_count
        return None, 0
    if not result.redirect_permanent:
        return state.redirect_target, state.redirect_count  # 302/307 change nothing
    if result.redirected_to == state.redirect_target:
        return state.redirect_target, state.redirect_count + 1
    return result.redirected_to, 1


def polled_url(state: SourceState | None, configured_url: str, settings: ScheduleSettings) -> str:
    """The URL to request: the configured one, or its confirmed permanent new home."""
    if (
        state is not None
        and state.redirect_target
        and state.redirect_count >= settings.redirect_confirmations
    ):
        return state.redirect_target
    return configured_url


def needs_unconditional(
    state: SourceState | None, now: datetime, settings: ScheduleSettings
) -> bool:
    """Send no validators this time (servers with broken 304s never show changes)."""
    if state is None or state.last_unconditional_at is None:
        return True
    return (now - state.last_unconditional_at).total_seconds() >= settings.unconditional_every


def _clamp(seconds: float, settings: ScheduleSettings) -> float:
    return min(max(seconds, settings.min_interval), settings.max_interval)
