"""Tests of workers/bench."""
