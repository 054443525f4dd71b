"""Durable storage of a shard: its event log and per-pool snapshots.

`EventLog` is the interface; `SqliteEventLog` is the production implementation (one WAL-mode
file per shard, opened exclusively) and `MemoryEventLog` the in-memory twin used by unit tests.
Both pass the same contract suite (`tests/contract`).
"""
