"""`python -m load.bench.classical`: run one process of the classical service."""

from load.bench.classical.app import main

main()
