"""Pure tests: no Redis, no subprocess, no network server; the whole folder runs in under a minute."""
