"""Tests of workers/attempt."""
