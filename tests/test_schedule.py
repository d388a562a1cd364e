"""schedule: next-check times, backoff, jitter, hints, redirects and 410 (no real clock)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config import ScheduleSettings
from aggregator.models import FetchOutcome, FetchResult, SourceState, Validators
from aggregator.schedule import (
    adaptive_interval,
    base_interval,
    cache_lifetime,
    error_backoff,
    has_history,
    needs_unconditional,
    plan_poll,
    polled_url,
    retry_after,
)
from tests.conftest import DATA, FeedServer, Route, write_config

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SETTINGS = ScheduleSettings(jitter=0.0)
STATE = SourceState(source_id="s", name="S", url="https://a.example/feed")


def result(outcome: FetchOutcome = FetchOutcome.OK, **fields: object) -> FetchResult:
    values: dict[str, object] = {"source_id": "s", "url": "https://a.example/feed", "status": 200}
    values.update(fields)
    return FetchResult(outcome=outcome, **values)  # type: ignore[arg-type]


def plan(state: SourceState = STATE, fetched: FetchResult | None = None, **kw: object):  # type: ignore[no-untyped-def]
    options: dict[str, object] = {"base": 1800.0, "settings": SETTINGS, "now": NOW}
    options.update(kw)
    return plan_poll(
        state=state,
        result=fetched or result(),
        rng=random.Random(7),
        **options,  # type: ignore[arg-type]
    )


def wait(update) -> float:  # type: ignore[no-untyped-def]
    return (update.next_check_at - NOW).total_seconds()


def test_success_uses_the_base_interval_and_clears_errors() -> None:
    update = plan(SourceState(source_id="s", name="S", url="u", error_count=4, gone=True))
    assert wait(update) == 1800
    assert (update.error_count, update.gone, update.outcome) == (0, False, FetchOutcome.OK)


@pytest.mark.parametrize(
    ("errors", "expected"),
    [(1, 300), (2, 600), (3, 1200), (6, 9600), (7, 19200), (8, 21600), (50, 21600), (10**6, 21600)],
)
def test_error_backoff_doubles_up_to_the_cap(errors: int, expected: float) -> None:
    assert error_backoff(errors, SETTINGS) == expected


def test_failing_source_backs_off_and_keeps_being_probed_at_the_cap() -> None:
    settings = ScheduleSettings(
        jitter=0.0, min_interval=60, error_backoff=300, error_backoff_cap=3600
    )
    state = STATE
    waits = []
    for _ in range(12):
        update = plan(state, result(FetchOutcome.FAILED, status=500, error="HTTP 500"), base=60.0,
                      settings=settings)  # fmt: skip
        waits.append(wait(update))
        state = SourceState(source_id="s", name="S", url="u", error_count=update.error_count)
    assert waits[:5] == [300, 600, 1200, 2400, 3600]
    assert set(waits[5:]) == {3600}  # never dropped: probed at the cap forever
    recovered = plan(state, result(), base=60.0, settings=settings)
    assert (recovered.error_count, wait(recovered)) == (0, 60)


def test_jitter_stays_within_bounds() -> None:
    settings = ScheduleSettings(jitter=0.1)
    rng = random.Random(1)
    waits = [
        (plan_poll(state=STATE, result=result(), base=1800.0, settings=settings, now=NOW, rng=rng)
         .next_check_at - NOW).total_seconds()
        for _ in range(500)
    ]  # fmt: skip
    assert min(waits) >= 1800 and max(waits) <= 1980
    assert max(waits) - min(waits) > 100  # it really spreads


@pytest.mark.parametrize(
    ("headers", "ttl", "expected"),
    [
        ((("cache-control", "public, max-age=7200"),), None, 7200),
        ((("expires", "Thu, 26 Nov 2026 15:00:00 GMT"),), None, 3 * 3600),
        ((), 120, 7200),  # feed <ttl> is in minutes
        ((("cache-control", "max-age=60"),), None, 1800),  # hints never shorten the base
        ((("cache-control", "max-age=999999"),), None, 86400),  # ... and are clamped
    ],
    ids=["max-age", "expires", "ttl", "short-hint", "clamped"],
)
def test_publisher_hints_lengthen_the_interval(
    headers: tuple[tuple[str, str], ...], ttl: int | None, expected: float
) -> None:
    assert wait(plan(fetched=result(headers=headers), ttl_minutes=ttl)) == expected


def test_retry_after_lengthens_the_wait_and_blocks_the_host() -> None:
    until = NOW + timedelta(hours=3)
    failed = result(FetchOutcome.FAILED, status=429, error="HTTP 429", host_blocked_until=until)
    update = plan(fetched=failed)
    assert wait(update) == 3 * 3600
    assert update.host_blocked_until == until


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", NOW + timedelta(seconds=120)),
        ("Thu, 26 Nov 2026 13:30:00 GMT", NOW + timedelta(minutes=90)),
        ("Wed, 25 Nov 2026 13:30:00 GMT", NOW),  # a past date means "now"
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_both_forms(value: str | None, expected: datetime | None) -> None:
    assert retry_after(value, NOW) == expected


def test_cache_lifetime_prefers_max_age_and_ignores_bad_expires() -> None:
    headers = {"cache-control": "max-age=600", "expires": "Thu, 26 Nov 2026 15:00:00 GMT"}
    assert cache_lifetime(headers, NOW) == 600
    assert cache_lifetime({"expires": "0"}, NOW) is None
    assert cache_lifetime({}, NOW) is None


def test_deferred_source_waits_for_its_host_without_counting_an_error() -> None:
    state = SourceState(source_id="s", name="S", url="u", error_count=2, interval=900.0)
    until = NOW + timedelta(minutes=45)
    update = plan(state, result(FetchOutcome.DEFERRED, status=None, host_blocked_until=until))
    assert wait(update) == 45 * 60
    assert (update.error_count, update.polled, update.outcome) == (2, False, FetchOutcome.DEFERRED)
    assert update.validators is None  # nothing learned, nothing overwritten


def test_gone_source_is_probed_weekly_and_recovers() -> None:
    gone = plan(fetched=result(FetchOutcome.FAILED, status=410, error="HTTP 410 Gone"))
    assert gone.gone
    assert wait(gone) == 7 * 86400
    back = plan(SourceState(source_id="s", name="S", url="u", gone=True, error_count=3))
    assert not back.gone


def test_parse_error_counts_as_a_failure_and_keeps_validators() -> None:
    update = plan(
        fetched=result(validators=Validators(etag='"new"')), parse_error="not a feed", body_hash="h"
    )
    assert (update.outcome, update.error_type, update.error_count) == (
        FetchOutcome.FAILED, "parse", 1,
    )  # fmt: skip
    assert update.validators is None and update.body_hash is None


def test_permanent_redirect_is_followed_after_k_polls() -> None:
    settings = ScheduleSettings(jitter=0.0, redirect_confirmations=3)
    moved = result(redirected_to="https://b.example/feed", redirect_permanent=True)
    state = STATE
    for expected_count in (1, 2, 3):
        assert polled_url(state, state.url, settings) == "https://a.example/feed"
        update = plan(state, moved, settings=settings)
        assert (update.redirect_target, update.redirect_count) == (
            "https://b.example/feed", expected_count,
        )  # fmt: skip
        state = SourceState(
            source_id="s", name="S", url=STATE.url,
            redirect_target=update.redirect_target, redirect_count=update.redirect_count,
        )  # fmt: skip
    assert polled_url(state, state.url, settings) == "https://b.example/feed"
    # Polling the new URL directly keeps the move confirmed.
    direct = plan(state, result(url="https://b.example/feed"), settings=settings)
    assert direct.redirect_count == 3


def test_temporary_redirects_change_nothing_and_a_direct_answer_resets() -> None:
    state = SourceState(
        source_id="s", name="S", url="u", redirect_target="https://b.example/feed",
        redirect_count=2,
    )  # fmt: skip
    temporary = plan(state, result(redirected_to="https://c.example/x", redirect_permanent=False))
    assert (temporary.redirect_target, temporary.redirect_count) == ("https://b.example/feed", 2)
    other = plan(state, result(redirected_to="https://c.example/x", redirect_permanent=True))
    assert (other.redirect_target, other.redirect_count) == ("https://c.example/x", 1)
    direct = plan(state, result())
    assert (direct.redirect_target, direct.redirect_count) == (None, 0)


def test_adaptive_interval_follows_posting_rate() -> None:
    settings = ScheduleSettings(min_interval=300, max_interval=86400)
    assert adaptive_interval(0, settings) == 86400  # quiet: poll rarely
    assert adaptive_interval(7, settings) == 86400
    assert adaptive_interval(84, settings) == 7200  # a dozen items a day: every 2 h
    assert adaptive_interval(10_000, settings) == 300  # busy: as often as allowed
    # A configured interval always wins; adaptive off falls back to the default.
    assert base_interval(600, 1800, 10_000, settings) == 600
    assert base_interval(None, 1800, 84, ScheduleSettings(adaptive=False)) == 1800
    assert base_interval(None, 1800, 84, settings) == 7200


def test_unconditional_fetch_at_most_every_n_hours() -> None:
    settings = ScheduleSettings(unconditional_every=86400)
    assert needs_unconditional(None, NOW, settings)
    recent = SourceState(
        source_id="s", name="S", url="u", last_unconditional_at=NOW - timedelta(hours=3)
    )
    assert not needs_unconditional(recent, NOW, settings)
    old = SourceState(
        source_id="s", name="S", url="u", last_unconditional_at=NOW - timedelta(days=2)
    )
    assert needs_unconditional(old, NOW, settings)


def test_adaptive_interval_waits_for_a_week_of_history() -> None:
    """A source with no history got the adaptive maximum (1 day) at once, so
    ``poll_interval`` never applied while ``schedule.adaptive`` was on."""
    settings = ScheduleSettings(jitter=0.0)
    assert base_interval(None, 1800, 0, settings, history=False) == 1800
    assert base_interval(None, 1800, 0, settings, history=True) == 86400
    young = SourceState(source_id="s", name="S", url="u", first_success_at=NOW - timedelta(days=6))
    old = SourceState(source_id="s", name="S", url="u", first_success_at=NOW - timedelta(days=7))
    assert not has_history(STATE, NOW) and not has_history(young, NOW)
    assert has_history(old, NOW)


def test_a_source_without_history_is_retried_on_the_backoff_alone() -> None:
    """A new source whose first poll failed was retried only after its (adaptive)
    interval, the next day; it now follows the error backoff until it has history."""
    failed = result(FetchOutcome.FAILED, status=500, error="HTTP 500")
    new = plan(STATE, failed, base=86400.0)
    assert wait(new) == 300
    second = plan(
        SourceState(source_id="s", name="S", url="u", error_count=1), failed, base=86400.0
    )
    assert wait(second) == 600
    known = SourceState(source_id="s", name="S", url="u", first_success_at=NOW - timedelta(days=30))
    assert wait(plan(known, failed, base=3600.0)) == 3600  # a known source keeps its pace


def test_new_sources_are_polled_at_poll_interval_end_to_end(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    from aggregator.config import load_config
    from aggregator.pipeline import run_cycle
    from aggregator.storage import Storage

    feed_server.routes["/ok.rss"] = Route(body=(DATA / "e2e" / "mills.rss").read_bytes())
    feed_server.routes["/down.rss"] = Route(status=500, validators=False)
    sources = "sources:\n" + "".join(
        f"  - id: {name}\n    name: {name}\n    url: {feed_server.url(f'/{name}.rss')}\n"
        for name in ("ok", "down")
    )
    settings = (
        "database: db.sqlite\noutput_dir: out\npoll_interval: 45m\nschedule:\n  jitter: 0\n"
        "fetch:\n  allow_private_addresses: true\n  per_host_delay: 0\n"
    )
    config = load_config(write_config(tmp_path / "cfg", sources=sources, settings=settings))
    storage = Storage.open_sqlite(config.database_path)
    try:
        run_cycle(config, storage, now=NOW)
        states = storage.source_states()
    finally:
        storage.close()
    assert states["ok"].first_success_at == NOW and states["down"].first_success_at is None
    assert states["ok"].next_check_at == NOW + timedelta(minutes=45)
    assert states["down"].next_check_at == NOW + timedelta(minutes=5)
