"""Planner tools, pure: bulk plans read from CSV, their diff against the current pools, the
CSV export, a pool's state as of a moment, and its history as a readable timeline.

No I/O here: the router (`capsvc.router.planner`) and the worker fetch and write; these modules
only compute, so every rule is tested without a server.
"""
