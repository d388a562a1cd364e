"""textile-feeds: poll textile-news sources, dedupe and categorize items, republish topic feeds."""

__version__ = "0.1.0"
