"""The ``textile-feeds`` command: parses arguments, calls the pipeline, prints results.

Exit status: 0 done (a cycle counts as done even when some sources failed), 1 a
runtime failure (database, output folder), 2 an invalid configuration or usage.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import click

from aggregator import __version__
from aggregator.config import AppConfig, load_config
from aggregator.errors import AggregatorError, ConfigError
from aggregator.models import CycleReport, FetchOutcome
from aggregator.storage import Storage

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


def _config(ctx: click.Context, config_dir: Path | None) -> AppConfig:
    """Load the config named on the command or the group; exit 2 listing every problem."""
    folder = config_dir or ctx.obj.get("config_dir") or Path(DEFAULT_CONFIG_DIR)
    try:
        return load_config(folder)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} configuration error(s); nothing was run.", err=True)
        ctx.exit(EXIT_CONFIG)
        raise AssertionError("unreachable") from None


def _setup_logging(verbose: int, default: int) -> None:
    level = {0: default, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # APScheduler narrates every job run at INFO; keep it for -vv.
    logging.getLogger("apscheduler").setLevel(max(level, logging.WARNING) if verbose < 2 else level)
    logging.getLogger("httpx").setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)


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
@click.option("--once", is_flag=True, help="Poll every source once, publish, and exit (for cron).")
@click.pass_context
def run(ctx: click.Context, config_dir: Path | None, once: bool) -> None:
    """Poll sources and publish feeds: once, or as a daemon until SIGTERM/SIGINT."""
    config = _config(ctx, config_dir)
    _setup_logging(ctx.obj["verbose"], logging.WARNING if once else logging.INFO)
    try:
        storage = Storage.open_sqlite(config.database_path)
        try:
            if once:
                from aggregator.pipeline import run_cycle

                report = run_cycle(config, storage)
                click.echo(format_report(report, config))
                if report.publish_errors:
                    ctx.exit(EXIT_FAILURE)
            else:
                from aggregator.scheduler import run_daemon

                run_daemon(config, storage)
        finally:
            storage.close()
    except AggregatorError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_FAILURE)


@cli.command()
@config_option
@click.pass_context
def status(ctx: click.Context, config_dir: Path | None) -> None:
    """Show each source's last poll, error and item count, failing sources first."""
    config = _config(ctx, config_dir)
    try:
        storage = Storage.open_sqlite(config.database_path)
        states = storage.source_states()
        total = storage.item_count()
        storage.close()
    except AggregatorError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_FAILURE)
    rows = []
    for source in config.sources:
        state = states.get(source.id)
        outcome = state.last_outcome if state and state.last_outcome else "never polled"
        if not source.enabled:
            outcome = "disabled"
        rows.append((source, state, outcome))
    rows.sort(key=lambda r: (r[2] != FetchOutcome.FAILED.value, r[0].id))
    width = max((len(s.id) for s in config.sources), default=10)
    for source, state, outcome in rows:
        line = f"{source.id:<{width}}  {outcome:<12}"
        if state:
            line += (
                f"  last ok {_when(state.last_success_at)}"
                f"  next {_when(state.next_check_at)}  items {state.item_count}"
            )
            if state.error_count:
                line += f"  errors {state.error_count}: {state.last_error}"
        click.echo(line)
    click.echo(f"{total} items stored in {config.database_path}")


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "never"


def format_report(report: CycleReport, config: AppConfig) -> str:
    """The short summary ``run --once`` prints for an operator."""
    outcomes = Counter(r.outcome for r in report.sources)
    lines = [
        f"Sources: {outcomes[FetchOutcome.OK]} ok, "
        f"{outcomes[FetchOutcome.NOT_MODIFIED]} not modified, "
        f"{outcomes[FetchOutcome.FAILED]} failed"
    ]
    width = max((len(r.source_id) for r in report.sources), default=10)
    for r in report.sources:
        if r.outcome is FetchOutcome.FAILED:
            detail = f"FAILED: {r.error}"
        elif r.outcome is FetchOutcome.NOT_MODIFIED:
            detail = "not modified"
        else:
            detail = f"{r.entries_seen} entries, {r.new_items} new, {r.updated_items} updated"
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
