"""The ``orderflow`` command line: :mod:`.app` (the Typer app and ``main``), one module per command group, the
options and helpers they share (:mod:`.options`, :mod:`.common`) and every report's rendering (:mod:`.render`)."""
