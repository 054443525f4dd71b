"""The pure domain: pools, slots and reservations as one consistency boundary per pool.

No I/O, no clock, no randomness: time and nonces arrive inside commands. `decide` turns a
command into events or a rejection; `evolve` folds an event into the pool and never rejects,
because events are facts; `check_invariants` runs after every evolve.
"""
