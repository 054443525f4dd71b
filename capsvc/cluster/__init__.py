"""Cluster coordination through ZooKeeper: membership, shard ownership, fencing epochs.

Knows nothing of pools: it decides which worker owns which shard, and with which epoch.
"""
