"""Ingest: commands enter here. The stream reader and its gates (routing, auth, signing, sealing, reply_to)."""
