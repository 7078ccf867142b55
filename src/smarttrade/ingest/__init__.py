"""The ingest engine: normalize trades, batch them, commit each batch atomically and once."""
