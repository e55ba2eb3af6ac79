"""Operating a deployed stack: its outputs and status, queries, compaction, rebuild, replay evaluation."""
