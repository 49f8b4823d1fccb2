"""The Redis Streams bus both services and the bot's client use (redis.asyncio): every Redis command and Lua script
of orderflow is in this package, each module one job. Import from the module that defines a name.

- :mod:`~orderflow_client.bus.keys` — every key and channel name (:class:`Keys`);
- :mod:`~orderflow_client.bus.connection` — :class:`Bus`: connecting (retry policy, hiredis packing, embedded
  fakeredis), PING, closing;
- :mod:`~orderflow_client.bus.calls` — the one place redis-py's errors become the bus's typed errors
  (``OUTAGE_ERRORS``);
- :mod:`~orderflow_client.bus.streams` — publish, read through a group, own pending, reclaim, ack, ranges
  (:class:`BusEntry`);
- :mod:`~orderflow_client.bus.entries` — market events packed into stream entries;
- :mod:`~orderflow_client.bus.groups` — consumer groups and where they stand (:class:`GroupPosition`);
- :mod:`~orderflow_client.bus.dead_letters` — entries a reader cannot handle, parked with the reason;
- :mod:`~orderflow_client.bus.channels` — pub/sub: publish and subscribe;
- :mod:`~orderflow_client.bus.outage` — one service's view of an outage (:class:`Outage`);
- :mod:`~orderflow_client.bus.scripts` — the Lua scripts;
- typed operations for the rest of orderflow: :mod:`~orderflow_client.bus.registry` (the positions hash),
  :mod:`~orderflow_client.bus.dedup` (publish once), :mod:`~orderflow_client.bus.profiles` (stored profiles),
  :mod:`~orderflow_client.bus.marks` (a bot's leases and done marks), :mod:`~orderflow_client.bus.decision_records`
  (what a bot decided on each recommendation).
"""
