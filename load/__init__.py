"""Load tests (Locust) and the benchmark of capsvc against classical PostgreSQL designs.

Nothing in `capsvc` imports this package, and the test suite never runs Locust; see
`load/README.md` for the commands.
"""
