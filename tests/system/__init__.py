"""System tests: the compose stack, a fresh clone, the soak, the bot's own virtualenv, the deployment."""
