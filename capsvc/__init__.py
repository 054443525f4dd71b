"""capsvc: a capacity reservation service for scheduled delivery.

One single-writer, event-sourced entity per capacity pool, held in memory by the worker that
owns its shard; sequentially consistent writes, eventually consistent availability reads.
"""

__version__ = "0.1.0"
