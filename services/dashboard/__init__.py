"""``orderflow dashboard``: a live web page of the open positions' selling pressure, fed from the bus.

:mod:`.market` and :mod:`.state` fold bus messages into what the page shows (pure, tested); :mod:`.views` turns
that into JSON; :mod:`.hub` fans events out to the browsers; :mod:`.readers` follow the bus; :mod:`.app` is the
aiohttp application (page, script, snapshot, server-sent events, token check, CSP); :mod:`.server` runs it.
"""
