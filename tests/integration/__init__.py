"""Integration tests: a real Redis, spawned `orderflow` processes, local protocol servers, and pure tests that run
`analyze` over whole real market days (tens of seconds each, too slow for tests/unit)."""
