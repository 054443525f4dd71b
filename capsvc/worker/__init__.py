"""A worker process: owns some shards, keeps their pools in memory, answers the router."""
