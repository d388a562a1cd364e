"""The one exception tree of textile-feeds.

    AggregatorError
    ├── ConfigError        a configuration file is wrong (carries every problem found)
    ├── SourceError        one source could not be read (source id, url)
    │   ├── FetchError     network, HTTP status, size or time limit
    │   └── ParseError     the body is not a feed we can read
    ├── StorageError       the database refused a read or write
    └── PublishError       an output feed could not be written

Only ConfigError and StorageError end a run; a SourceError is recorded on its
source and the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class AggregatorError(Exception):
    """Root of every error textile-feeds raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One mistake in one configuration file, located for a human."""

    path: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigError(AggregatorError):
    """The configuration is invalid; ``problems`` lists every mistake found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SourceError(AggregatorError):
    """Reading one source failed; the run continues with the others."""

    def __init__(self, source_id: str, url: str, message: str) -> None:
        self.source_id = source_id
        self.url = url
        self.message = message
        super().__init__(f"{source_id}: {message}")


class FetchError(SourceError):
    """The source could not be downloaded (network, HTTP status, limits)."""


class ParseError(SourceError):
    """The downloaded body is not a feed we can read. ``kind`` is the error type shown
    by ``status``: ``parse``, or ``encoding`` for bytes not in any clear charset."""

    def __init__(self, source_id: str, url: str, message: str, *, kind: str = "parse") -> None:
        super().__init__(source_id, url, message)
        self.kind = kind


class StorageError(AggregatorError):
    """The database refused an operation; the run stops, nothing half-written stays."""


class ConflictError(StorageError):
    """A unique key refused a row another process stored first (two workers storing one
    story at the same moment); doing the work again finds it stored."""


class PublishError(AggregatorError):
    """An output feed could not be written; the previous file is left intact."""
