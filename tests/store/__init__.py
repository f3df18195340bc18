"""Tests of workers/store."""
