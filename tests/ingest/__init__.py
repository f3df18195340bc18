"""Tests of workers/ingest."""
