"""Operator tools behind `capsvc backup`, `restore`, `verify` and `archive`.

They work on shard files, never through the domain's write path: `backup` asks the running
workers for online copies (or copies the files itself while the service is stopped); the
others need the service stopped (they refuse while a running instance holds the data
directory) and say so.
"""
