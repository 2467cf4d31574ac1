"""Scheduling, limits, retries, caching, accounting and resumable record storage."""
