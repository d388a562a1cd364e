"""Parsers: turn a fetched body into a ``ParsedFeed``. Only feeds for now."""

from aggregator.parse.feed import parse_feed

__all__ = ["parse_feed"]
