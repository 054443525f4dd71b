"""The classical design capsvc is compared with: a stateless aiohttp app over PostgreSQL.

The same reserve / release / availability API as capsvc, with three ways of keeping the rule
`reserved + units <= capacity` in the database:
- `tx`: `UPDATE slots ... WHERE reserved + $units <= capacity`, then the reservation row is
  inserted, in one transaction (BEGIN, UPDATE, INSERT, COMMIT: four round trips);
- `cte`: the same rule as one statement, `WITH s AS (UPDATE ... RETURNING) INSERT ...`
  (one round trip: the strongest classical variant);
- `occ`: optimistic concurrency, a version column: read, then a conditional update that
  fails when the version moved, re-read and retry.
"""
