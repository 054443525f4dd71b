"""The classical design capsvc is compared with: a stateless aiohttp app over PostgreSQL (or
Redis).

The same reserve / release / availability API as capsvc, with three ways of keeping the rule
`reserved + units <= capacity` in PostgreSQL (store.py):
- `tx`: `UPDATE slots ... WHERE reserved + $units <= capacity`, then the reservation row is
  inserted, in one transaction (BEGIN, UPDATE, INSERT, COMMIT: four round trips);
- `cte`: the same rule as one statement, `WITH s AS (UPDATE ... RETURNING) INSERT ...`
  (one round trip: the strongest PostgreSQL variant);
- `occ`: optimistic concurrency, a version column: read, then a conditional update that
  fails when the version moved, re-read and retry.

and one in Redis (redis_store.py):
- `redis-lua`: a Lua script checks the slot and increments it, records the reservation and its
  idempotency key, atomically (EVALSHA: one round trip); Redis with `appendonly yes`,
  `appendfsync always` (each write fsynced before its answer).
"""
