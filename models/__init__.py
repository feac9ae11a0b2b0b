"""Pure, synchronous recommendation logic: no Kafka, Redis, Faust or network I/O.

`streams` imports `models`, never the reverse (enforced by ruff's banned-api rules in
models/ruff.toml).
"""
