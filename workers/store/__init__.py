"""The store: what mailops keeps in Redis. Command records, dead letters, the wire and Lua layer, every script."""
