"""The archive compactor: an hour of processed gzip JSON-lines objects rewritten as one Parquet file.

docs/querying.md ("Compacted archive") says why and how; ``compaction.compact_hour`` is the logic,
``handler`` the thin Lambda entry point (an hourly schedule and ``iotpipe archive compact``).
"""
