"""Order-flow analytics: bars, footprint metrics per bar, and incremental indicators."""
