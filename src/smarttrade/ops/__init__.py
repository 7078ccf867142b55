"""Operations: what the runbook's redis-cli recipes did, as safe reads (INFO, SCAN, never KEYS)."""
