"""``orderflow backtest``: what following the signals is worth, against chance and net of the spread.

One module per job: :mod:`.collect` (the engine run and the price tape), :mod:`.statistics` (signals versus
chance), :mod:`.positions` (the positions to follow), :mod:`.exits` (the exit simulation), :mod:`.sweep` (the
settings grid on held-out days), :mod:`.report` (report.json, report.html, sweep.json) and :mod:`.report_html`
(the page); :mod:`.heart` and :mod:`.heart_moments` (the success metrics: positions exited before a drop, exit P&L
against the stop alone, false-positive exits, alerts a day, the cost rule's effect; docs/success-metrics.md);
:mod:`.models` holds the settings and the typed report the others build.
"""
