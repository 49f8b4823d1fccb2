"""Helpers the tests share: a Redis server, a Polygon REST server, paths, event builders, the CLI spawner."""
