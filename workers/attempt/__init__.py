"""One attempt at a command: its executor and the plain parts it is made of (ordering, holds, limits, retry policy, read-back, isolation)."""
