"""``python -m services.cli …``: the same as the ``orderflow`` console script."""

from services.cli.app import main

main()
