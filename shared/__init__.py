"""Code both services share: configuration (``config``), the condition table (``conditions``), the NBBO (``nbbo``),
Redis users (``acl``) — and, under their usual names, the modules a bot embeds too.

Those (``bus``, ``wire``, ``prices``, ``timestamps``, ``errors``, ``signing``, ``logs``, ``metrics``, ``positions``,
``risk``) live in the :mod:`orderflow_client` package, so a bot installs that one package and nothing named
``shared`` or ``services`` lands on its import path. ``shared.bus`` and ``orderflow_client.bus`` are the same
module object (registered here), so services keep writing ``from shared.bus import Bus``.
"""

import importlib
import sys

EMBEDDED = ("errors", "timestamps", "prices", "wire", "signing", "logs", "metrics", "bus", "positions", "risk")

for _name in EMBEDDED:
    _module = importlib.import_module(f"orderflow_client.{_name}")
    sys.modules[f"{__name__}.{_name}"] = _module
    globals()[_name] = _module
