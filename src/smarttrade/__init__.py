"""Smart-Trade real-time market-data layer on Redis."""

__version__ = "0.1.0"
