"""The ``textile-feeds`` command: parses arguments, calls the pipeline, prints results.

Exit status: 0 done (a cycle counts as done even when some sources failed), 1 a
runtime failure (database, output folder), 2 an invalid configuration or usage.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from aggregator import __version__
from aggregator.categorize import format_hits
from aggregator.config import AppConfig, SourceConfig, load_config
from aggregator.curate import explain as explain_item
from aggregator.curate import preview as preview_topic
from aggregator.curate import recategorize as recategorize_items
from aggregator.errors import AggregatorError, ConfigError
from aggregator.models import CycleReport, FetchOutcome, SourceReport, SourceState
from aggregator.pipeline import publish_stored, run_cycle, try_source
from aggregator.storage import Storage
from aggregator.storage.lock import database_lock

EXIT_FAILURE = 1
EXIT_CONFIG = 2
DEFAULT_CONFIG_DIR = "config"

config_option = click.option(
    "--config",
    "config_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Config folder holding settings.yaml, sources.yaml, topics.yaml [default: ./config].",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(__version__, prog_name="textile-feeds")
@click.pass_context
def cli(ctx: click.Context, config_dir: Path | None, verbose: int) -> None:
    """Poll textile-news sources, dedupe and categorize items, publish topic feeds."""
    ctx.ensure_object(dict)
    ctx.obj["config_dir"] = config_dir
    ctx.obj["verbose"] = verbose


def _config(
    ctx: click.Context, config_dir: Path | None, *, topics_path: Path | None = None
) -> AppConfig:
    """Load the config named on the command or the group; exit 2 listing every problem."""
    folder = config_dir or ctx.obj.get("config_dir") or Path(DEFAULT_CONFIG_DIR)
    try:
        return load_config(folder, topics_path=topics_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} configuration error(s); nothing was run.", err=True)
        ctx.exit(EXIT_CONFIG)
        raise AssertionError("unreachable") from None


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the context fields passed as ``extra``."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in self._STANDARD}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _setup_logging(config: AppConfig, verbose: int, *, quiet_default: bool) -> None:
    """Level and format from settings; ``-v``/``-vv`` raise the level; one-shot runs
    stay quiet (WARNING) unless asked, since their summary says what happened."""
    configured = logging.getLevelName(config.settings.logging.level)
    level = max(configured, logging.WARNING) if quiet_default else configured
    level = {0: level, 1: min(level, logging.INFO)}.get(verbose, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    if config.settings.logging.format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler narrates every job run at INFO, httpx every request; keep them for -vv.
    for noisy in ("apscheduler", "httpx"):
        logging.getLogger(noisy).setLevel(level if verbose >= 2 else max(level, logging.WARNING))


@cli.command()
@config_option
@click.pass_context
def check(ctx: click.Context, config_dir: Path | None) -> None:
    """Validate the configuration and list every problem (exit 2 if any)."""
    config = _config(ctx, config_dir)
    enabled = sum(1 for s in config.sources if s.enabled)
    click.echo(
        f"{config.config_dir}: OK, {len(config.sources)} sources ({enabled} enabled), "
        f"{len(config.topics)} topics"
    )


@cli.command()
@config_option
@click.argument("url")
@click.option("--id", "source_id", help="The new source's id (default: from the feed's title).")
@click.option("--name", help="Its name in attribution (default: the feed's title).")
@click.option("--dry-run", is_flag=True, help="Print the entry instead of adding it.")
@click.pass_context
def add(
    ctx: click.Context, config_dir: Path | None, url: str, source_id: str | None,
    name: str | None, dry_run: bool,
) -> None:  # fmt: skip
    """Add a source from a feed or a home page URL: finds the feed (the page's
    advertised feeds, then common paths), fetches it once to check it, and appends the
    entry to sources.yaml, keeping the file's comments."""
    from aggregator.fetch import Fetcher
    from aggregator.subscribe import (
        SubscribeError,
        append_sources,
        discover,
        known_feed,
        new_entry,
    )

    config = _config(ctx, config_dir)
    try:
        found = discover(url, Fetcher(config.settings.fetch, config.user_agent))
        if existing := known_feed(config, found.url):
            raise SubscribeError(f"{found.url} is already source {existing!r}")
        entry = new_entry(found, (s.id for s in config.sources), source_id=source_id, name=name)
        click.echo(f"found {found.url}: {found.title or '(untitled)'}, {found.entries} entries",
                   err=True)  # fmt: skip
        click.echo(_entry_yaml(entry), nl=False)
        if not dry_run:
            path = append_sources(config, [entry])
            click.echo(f"added source {entry['id']!r} to {path}", err=True)
    except SubscribeError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_FAILURE)


@cli.command(name="import")
@config_option
@click.argument("opml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the entries instead of adding them.")
@click.pass_context
def import_(ctx: click.Context, config_dir: Path | None, opml: Path, dry_run: bool) -> None:
    """Add every feed of an OPML subscription list (as Miniflux, reader or newsboat
    export it): each is fetched once to check it; duplicates and failures are reported
    and left out. Exit 1 if any failed."""
    from aggregator.fetch import Fetcher
    from aggregator.subscribe import (
        SubscribeError,
        append_sources,
        discover,
        known_feed,
        new_entry,
        opml_feeds,
    )

    config = _config(ctx, config_dir)
    fetcher = Fetcher(config.settings.fetch, config.user_agent)
    try:
        outlines = opml_feeds(opml)
    except SubscribeError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)
    taken = [s.id for s in config.sources]
    seen: dict[str, str] = {}
    added, duplicates, failures = [], 0, 0
    for url, title in outlines:
        try:
            found = discover(url, fetcher)
        except SubscribeError as exc:
            failures += 1
            click.echo(f"failed     {url}: {exc}", err=True)
            continue
        existing = known_feed(config, found.url) or seen.get(found.url)
        if existing:
            duplicates += 1
            click.echo(f"duplicate  {url}: already source {existing!r}", err=True)
            continue
        entry = new_entry(found, taken, name=None if found.title else title or None)
        taken.append(entry["id"])
        seen[found.url] = entry["id"]
        added.append(entry)
        click.echo(f"ok         {url}: {entry['id']}", err=True)
    for entry in added:
        click.echo(_entry_yaml(entry), nl=False)
    if added and not dry_run:
        try:
            path = append_sources(config, added)
        except SubscribeError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_FAILURE)
        click.echo(f"added {len(added)} sources to {path}", err=True)
    click.echo(f"{len(outlines)} feeds in {opml.name}: {len(added)} "
               f"{'to add' if dry_run else 'added'}, {duplicates} duplicates, "
               f"{failures} failed", err=True)  # fmt: skip
    if failures:
        ctx.exit(EXIT_FAILURE)


@cli.command()
@config_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")  # fmt: skip
@click.pass_context
def export(ctx: click.Context, config_dir: Path | None, output: Path | None) -> None:
    """Write the sources' feeds as an OPML 2.0 subscription list."""
    from aggregator.publish.site import render_sources_opml

    config = _config(ctx, config_dir)
    document = render_sources_opml(config)
    if output is None:
        click.echo(document.decode("utf-8"), nl=False)
    else:
        output.write_bytes(document)


@contextmanager
def progress_line(*, enabled: bool) -> Iterator[Callable[[int, SourceReport | None], None] | None]:
    """A live line (rich): sources done of total, new items, failures; None when
    ``enabled`` is false (no terminal: cron, CI and pipes get the summary alone)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("polling"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[new]} new, {task.fields[failed]} failed"))  # fmt: skip
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("poll", total=None, new=0, failed=0)
        counts = {"new": 0, "failed": 0}

        def advance(total: int, report: SourceReport | None) -> None:
            if report is None:
                bar.update(task, total=total)
                return
            counts["new"] += report.new_items
            counts["failed"] += report.outcome is FetchOutcome.FAILED
            bar.update(task, advance=1, new=counts["new"], failed=counts["failed"])

        yield advance


def _entry_yaml(entry: dict[str, str]) -> str:
    import yaml

    return str(yaml.safe_dump([entry], allow_unicode=True, sort_keys=False))


@cli.command()
@config_option
@click.option("--once", is_flag=True, help="Poll every source once, publish, and exit (for cron).")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="The daemon serves /healthz and /metrics here (default: status.listen).",
)
@click.pass_context
def run(ctx: click.Context, config_dir: Path | None, once: bool, listen: str | None) -> None:
    """Poll sources and publish feeds: once, or as a daemon until SIGTERM/SIGINT. On a
    terminal, run --once shows a progress line; from cron or a pipe only the summary."""
    config = _config(ctx, config_dir)
    _setup_logging(config, ctx.obj["verbose"], quiet_default=once)
    try:
        # One writer per database: a second daemon, or cron during a daemon, refuses.
        storage = Storage.for_config(config)
        try:
            if storage.engine_name != "sqlite":  # PostgreSQL: work alongside other workers
                from aggregator.worker import run_worker  # APScheduler: daemons only

                run_worker(config, storage, once=once)
                if once:
                    click.echo(_worker_summary(config, storage))
                return
            with database_lock(config, storage):
                if once:
                    with progress_line(enabled=sys.stderr.isatty()) as progress:
                        report = run_cycle(config, storage, progress=progress)
                    click.echo(format_report(report, config))
                    if report.publish_errors:
                        ctx.exit(EXIT_FAILURE)
                else:
                    from aggregator.scheduler import run_daemon

                    run_daemon(config, storage, listen=listen)
        finally:
            storage.close()
    except AggregatorError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_FAILURE)


@cli.command()
@config_option
@click.pass_context
def worker(ctx: click.Context, config_dir: Path | None) -> None:
    """Poll sources alongside other workers on one PostgreSQL database, until
    SIGTERM/SIGINT (database_url must be set; see "Several workers" in the README)."""
    config = _config(ctx, config_dir)
    _setup_logging(config, ctx.obj["verbose"], quiet_default=False)
    if not config.database_url:
        click.echo(
            "error: workers share a PostgreSQL database; set database_url in settings.yaml "
            "(with SQLite, run one `textile-feeds run`)",
            err=True,
        )
        ctx.exit(EXIT_FAILURE)
    try:
        storage = Storage.for_config(config)
        try:
            from aggregator.worker import run_worker

            run_worker(config, storage)
        finally:
            storage.close()
    except AggregatorError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_FAILURE)


def _worker_summary(config: AppConfig, storage: Storage) -> str:
    counts = storage.topic_counts()
    topics = ", ".join(f"{t.slug} {counts.get(t.slug, 0)}" for t in config.topics)
    return f"{storage.item_count()} items stored in {config.database_name}\nTopics: {topics}"


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per source, for machines.")
@click.pass_context
def status(ctx: click.Context, config_dir: Path | None, as_json: bool) -> None:
    """Show every source's polling state, problems first.

    Exit status 1 when a source has failed status.failing_after polls in a row (for
    monitoring), else 0. A configuration that never ran has no database, and status
    does not create one."""
    config = _config(ctx, config_dir)
    states: dict[str, SourceState] = {}
    total = 0
    if config.database_url is None and not config.database_path.exists():
        click.echo(f"no database yet at {config.database_path}: never run", err=True)
    else:
        try:
            storage = Storage.for_config(config)
            states = storage.source_states()
            total = storage.item_count()
            storage.close()
        except AggregatorError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_FAILURE)
    rows = [source_status(config, source, states.get(source.id)) for source in config.sources]
    rows.sort(key=lambda row: (-row["severity"], row["id"]))
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(format_status(rows, total, config))
    threshold = config.settings.status.failing_after
    if any(row["consecutive_errors"] >= threshold for row in rows if row["enabled"]):
        ctx.exit(EXIT_FAILURE)


def source_status(
    config: AppConfig, source: SourceConfig, stored: SourceState | None
) -> dict[str, Any]:
    """One source's state as plain data (the ``status --json`` row)."""
    state = stored or SourceState(source_id=source.id, name=source.name, url=source.url)
    following = bool(
        state.redirect_target
        and state.redirect_count >= config.settings.schedule.redirect_confirmations
    )
    if not source.enabled:
        label, severity = "disabled", 0
    elif state.last_attempt_at is None:
        label, severity = "never polled", 1
    elif state.gone:
        label, severity = "gone", 4
    elif state.error_count:
        label, severity = "failing", 3
    elif following:
        label, severity = "moved", 2
    else:
        label, severity = state.last_outcome or "ok", 0
    suggestion = None
    if following:
        suggestion = (
            f"{config.url_locations.get(source.id, 'sources.yaml')}: set url of "
            f"{source.id!r} to {state.redirect_target} (permanent redirect seen on "
            f"{state.redirect_count} polls in a row; polling the new URL meanwhile)"
        )
    return {
        "id": source.id,
        "url": source.url,
        "enabled": source.enabled,
        "state": label,
        "severity": severity,
        "last_attempt": state.last_attempt_at,
        "last_success": state.last_success_at,
        "last_status": state.last_status,
        "last_error_type": state.last_error_type if state.error_count else None,
        "last_error": state.last_error if state.error_count else None,
        "consecutive_errors": state.error_count,
        "next_check": state.next_check_at,
        "interval_seconds": state.interval,
        "items": state.item_count,
        "polls": state.polls,
        "not_modified_share": (
            round(state.not_modified_polls / state.polls, 3) if state.polls else None
        ),
        "redirect_target": state.redirect_target,
        "suggested_edit": suggestion,
    }


def format_status(rows: list[dict[str, Any]], total: int, config: AppConfig) -> str:
    width = max((len(row["id"]) for row in rows), default=10)
    lines = [
        f"{'SOURCE':<{width}}  {'STATE':<12}  {'LAST OK':<16}  {'NEXT CHECK':<16}  "
        f"{'ERRORS':>6}  {'ITEMS':>5}  {'304s':>4}  LAST ERROR"
    ]
    for row in rows:
        share = row["not_modified_share"]
        lines.append(
            f"{row['id']:<{width}}  {row['state']:<12}  {_when(row['last_success']):<16}  "
            f"{_when(row['next_check']):<16}  {row['consecutive_errors']:>6}  {row['items']:>5}  "
            f"{'-' if share is None else f'{share:.0%}':>4}  {row['last_error'] or ''}"
        )
        if row["suggested_edit"]:
            lines.append(f"{'':<{width}}  -> {row['suggested_edit']}")
    lines.append(f"{total} items stored in {config.database_name}")
    return "\n".join(lines)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "never"


@cli.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on.")
@click.pass_context
def serve(ctx: click.Context, config_dir: Path | None, host: str, port: int) -> None:
    """Serve the output folder over HTTP (ETag/304, gzip, feed content types,
    Cache-Control of half the poll interval), with /healthz and /metrics."""
    import uvicorn

    from aggregator.serve import create_app

    config = _config(ctx, config_dir)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    click.echo(f"serving {config.output_dir} on http://{host}:{port}/", err=True)
    # Feeds change once a cycle: caches may keep them half a poll interval.
    max_age = int(config.settings.poll_interval // 2)
    app = create_app(config.output_dir, max_age=max_age, config=config)
    uvicorn.run(app, host=host, port=port, log_level="info")


@cli.command(name="try")
@config_option
@click.argument("source_id")
@click.option("--limit", type=int, default=20, show_default=True, help="Items to show.")
@click.pass_context
def try_(ctx: click.Context, config_dir: Path | None, source_id: str, limit: int) -> None:
    """Fetch one source and show what it would yield, storing nothing.

    For writing selectors by trial: each item's title, link, date, start of the
    summary, original publisher and topics. Works on snapshot files too. Exit 1 when
    the source cannot be read."""
    config = _config(ctx, config_dir)
    _setup_logging(config, ctx.obj["verbose"], quiet_default=True)
    try:
        source = config.source(source_id)
    except KeyError:
        known = ", ".join(s.id for s in config.sources)
        click.echo(f"error: no source {source_id!r} in the config (known: {known})", err=True)
        ctx.exit(EXIT_CONFIG)
    trial = try_source(config, source)
    fetched = trial.fetched
    click.echo(f"{source.id} ({source.type}) {fetched.url}")
    click.echo(f"  fetch: {fetched.outcome.value}, HTTP {fetched.status or '-'}, "
               f"{len(fetched.body)} bytes in {fetched.duration:.2f}s")  # fmt: skip
    for item, slugs in trial.items[:limit]:
        when = "none (first seen now)" if item.date_missing else f"{_when(item.published_at)} UTC"
        click.echo(f"\n- {item.title}")
        click.echo(f"  link:      {item.link or '-'}")
        click.echo(f"  date:      {when}")
        click.echo(f"  summary:   {item.summary_text[:100] or '-'}")
        if item.original_publisher:
            click.echo(f"  publisher: {item.original_publisher}")
        click.echo(f"  topics:    {', '.join(slugs) or '-'}")
    shown = min(limit, len(trial.items))
    click.echo(f"\n{len(trial.items)} items ({shown} shown); nothing was stored.")
    if trial.read.problem:
        click.echo(f"problem ({trial.read.problem_type}): {trial.read.problem}", err=True)
        if not trial.items:
            ctx.exit(EXIT_FAILURE)


@cli.command()
@config_option
@click.argument("url")
@click.pass_context
def explain(ctx: click.Context, config_dir: Path | None, url: str) -> None:
    """Show, for every topic, whether the stored item at URL is in it and why.

    Terms hit (field and points), the excludes that vetoed, the score against the
    threshold, missing all_of terms and the match expression. Exit 1 if no stored
    item has that link."""
    config = _config(ctx, config_dir)
    with _storage(ctx, config) as storage:
        found = explain_item(config, storage, url)
    if found is None:
        click.echo(f"no stored item has the link {url}", err=True)
        ctx.exit(EXIT_FAILURE)
    item = found.item
    now_in = ", ".join(found.current_topics) or "-"
    click.echo(f"{item.title}\n  {item.link}")
    click.echo(f"  source {item.source_id}, published {_when(item.published_at)} UTC, in: {now_in}")
    scope = next((v.scope for v in found.verdicts if v.scope is not None), None)
    if scope is not None:
        click.echo(f"  {scope.reason()}")
    for verdict in found.verdicts:
        mark = "IN " if verdict.belongs else "out"
        line = f"{mark} {verdict.slug:<22} score {verdict.score:g} / {verdict.threshold:g}"
        reasons = verdict.reasons()
        click.echo(f"{line}  hits: {format_hits(verdict.hits)}")
        for reason in reasons:
            click.echo(f"    {reason}")
    members = found.story
    click.echo(f"story {found.story_public_id}: {len(members)} report(s)")
    for member in members:
        mark = "*" if member.item_id == found.item_id else " "
        how = (
            "founded the story"
            if member.similarity is None
            else f"joined at similarity {member.similarity:.2f} via item {member.via}"
            + (f" ({member.reason})" if member.reason else "")
        )
        click.echo(f" {mark} item {member.item_id} [{member.item.source_id}] "
                   f"{member.item.title[:70]}: {how}")  # fmt: skip


@cli.command()
@config_option
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--part",
    type=click.Choice(["all", "odd", "even"]),
    default="all",
    show_default=True,
    help="Only items whose id ends in an odd (or even) number: tune on one half, report the other.",
)
@click.option("--errors", default=15, show_default=True, help="How many worst errors to list.")
@click.pass_context
def evaluate(
    ctx: click.Context, config_dir: Path | None, labels: Path, part: str, errors: int
) -> None:
    """Score the topic rules against labelled items (LABELS: a JSONL file).

    Each line: {"id", "title", "summary", "source_category", "lang", "style",
    "topics": [...]}. Prints precision, recall and F1 per topic, macro-F1, figures
    per language and style, the items labelled with no topic that got one, and the
    worst errors with the reasons explain gives. Touches no database."""
    from aggregator.categorize import compile_topics
    from aggregator.evaluate import LabelsError, read_labels
    from aggregator.evaluate import evaluate as run_evaluation
    from aggregator.evaluate import format_report as format_evaluation

    config = _config(ctx, config_dir)
    try:
        cases = read_labels(labels, part=part)
    except LabelsError as exc:
        click.echo(str(exc), err=True)
        ctx.exit(EXIT_CONFIG)
    topics = compile_topics(config.topics, config.rule_sets)
    overall, groups = run_evaluation(cases, topics)
    click.echo(format_evaluation(overall, groups, errors=errors))


@cli.command()
@config_option
@click.argument("topic")
@click.option(
    "--file",
    "topics_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Preview an edited topics file instead of the one in force.",
)
@click.option("--limit", type=int, default=20, show_default=True, help="Items listed per part.")
@click.pass_context
def preview(
    ctx: click.Context, config_dir: Path | None, topic: str, topics_file: Path | None, limit: int
) -> None:
    """Run TOPIC's rules over stored items and show the feed it would make.

    Lists the items it would hold (with the terms that matched), and which would join
    or leave compared with now. Changes nothing."""
    config = _config(ctx, config_dir, topics_path=topics_file)
    if topic not in {t.slug for t in config.topics}:
        known = ", ".join(t.slug for t in config.topics)
        click.echo(f"error: no topic {topic!r} (known: {known})", err=True)
        ctx.exit(EXIT_CONFIG)
    with _storage(ctx, config) as storage:
        result = preview_topic(config, storage, topic, now=datetime.now(UTC))
    click.echo(f"{topic}: {len(result.members)} items would be in the feed window")
    for item, hits in result.members[:limit]:
        click.echo(f"  {_when(item.published_at)}  {item.title[:90]}\n      {format_hits(hits)}")
    for label, items in (("would join", result.joining), ("would leave", result.leaving)):
        click.echo(f"{len(items)} {label}:")
        for item in items[:limit]:
            click.echo(f"  {_when(item.published_at)}  {item.title[:90]}")


@cli.command()
@config_option
@click.pass_context
def recategorize(ctx: click.Context, config_dir: Path | None) -> None:
    """Re-apply the topic rules to stored items within the feed window, and republish.

    Runs by itself when the rules change (at the next cycle, or the daemon's next
    round after a reload); this command does it now."""
    config = _config(ctx, config_dir)
    _setup_logging(config, ctx.obj["verbose"], quiet_default=True)
    try:
        with _storage(ctx, config) as storage, database_lock(config, storage):
            result = recategorize_items(config, storage, now=datetime.now(UTC))
            published = publish_stored(config, storage)
    except AggregatorError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_FAILURE)
    click.echo(f"{result.examined} items examined, {result.changed} changed topics")
    for slug in sorted(set(result.joined) | set(result.left)):
        click.echo(f"  {slug:<22} +{result.joined.get(slug, 0)} -{result.left.get(slug, 0)}")
    click.echo(f"Feeds: {len(published.written)} written, {len(published.unchanged)} unchanged")


@contextmanager
def _storage(ctx: click.Context, config: AppConfig) -> Iterator[Storage]:
    try:
        storage = Storage.for_config(config)
    except AggregatorError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_FAILURE)
    try:
        yield storage
    finally:
        storage.close()


def format_report(report: CycleReport, config: AppConfig) -> str:
    """The short summary ``run --once`` prints for an operator."""
    outcomes = Counter(r.outcome for r in report.sources)
    lines = [
        f"Sources: {outcomes[FetchOutcome.OK]} ok, "
        f"{outcomes[FetchOutcome.NOT_MODIFIED]} not modified, "
        f"{outcomes[FetchOutcome.FAILED]} failed"
        + (f", {deferred} deferred" if (deferred := outcomes[FetchOutcome.DEFERRED]) else "")
    ]
    width = max((len(r.source_id) for r in report.sources), default=10)
    for r in report.sources:
        if r.outcome is FetchOutcome.FAILED:
            detail = f"FAILED: {r.error}"
        elif r.outcome is FetchOutcome.NOT_MODIFIED:
            detail = "not modified"
        elif r.outcome is FetchOutcome.DEFERRED:
            # Not polled: its host asked to be left alone (429/503 Retry-After).
            detail = f"deferred: its host asked to wait; next try {_when(r.next_check_at)} UTC"
        else:
            detail = f"{r.entries_seen} entries, {r.new_items} new, {r.updated_items} updated"
            if r.empty_entries:
                detail += f", {r.empty_entries} empty dropped"
        lines.append(f"  {r.source_id:<{width}}  {detail}")
    lines.append(f"New items: {report.new_items}")
    lines.append("Items per topic:")
    slug_width = max((len(slug) for slug, _ in report.topic_counts), default=10)
    lines.extend(f"  {slug:<{slug_width}}  {count}" for slug, count in report.topic_counts)
    lines.append(
        f"Feeds: {len(report.files_written)} written, {report.files_unchanged} unchanged "
        f"in {config.output_dir}"
    )
    lines.extend(f"  publish error: {e}" for e in report.publish_errors)
    return "\n".join(lines)


def main() -> None:
    cli(prog_name="textile-feeds")
