"""One single-writer loop per shard: decide, group-commit, apply, reply; and recovery."""
