"""Integration tests: a real Redis, spawned `orderflow` processes, local protocol servers."""
