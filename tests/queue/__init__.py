"""Tests of workers/queue."""
