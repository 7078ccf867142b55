"""Redis plumbing: connection pools, the embedded server, the trading profile, Lua scripts."""
