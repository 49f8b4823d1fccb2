"""Code both services and the bot share: wire types, config, logging, metrics, bus."""
