"""Databento's publisher ids → the venue (ISO 10383 MIC) and the Polygon exchange id orderflow's events carry.

A DBN record names its source by ``publisher_id``, one number per dataset and venue: ``2`` is XNAS.ITCH.XNAS (Nasdaq
TotalView-ITCH), ``66`` EQUS.ALL.XNAS (Nasdaq inside Databento's consolidated US equities). The table below
mirrors, for the US equity publishers, the one in the ``databento`` package (``databento.common.publishers``), so
reading a DBN file never imports ``databento`` (about 1 s); ``tests/unit/test_databento_files.py`` holds it to that
package's table entry by entry. Trades carry Polygon's exchange ids (those of the Polygon and AlgoSeek parsers),
and prints reported to a FINRA trade reporting facility Polygon's exchange 4 with its TRF id::

    venue_of(2)     == ("XNAS", 12, 0)    # Nasdaq
    venue_of(68)    == ("FINN", 4, 202)   # EQUS.ALL: FINRA / Nasdaq TRF Carteret
    venue_of(1)     == ("", 0, 0)         # CME Globex: not a US equity venue
"""

from __future__ import annotations

# publisher id → venue MIC, from databento.common.publishers.Publisher (US equity datasets only)
_PUBLISHERS = """
2 XNAS 3 XBOS 4 XPSX 5 BATS 6 BATY 7 EDGA 8 EDGX 9 XNYS 10 XCIS 11 XASE 12 XCHI 13 XCIS 14 XCIS 15 MEMX 16 EPRL
17 FINN 18 FINC 19 FINY 38 IEXG 39 XCHI 40 XCIS 41 IEXG 42 EPRL 43 ARCX 44 XNYS 45 XNYS 46 XNAS 47 XNAS 48 XCHI
49 XCIS 50 IEXG 51 EPRL 52 XNAS 53 XNYS 54 FINN 55 FINY 56 FINC 59 DBEQ 60 EQUS 62 XCHI 63 XCIS 64 IEXG 65 EPRL
66 XNAS 67 XNYS 68 FINN 69 FINY 70 FINC 71 BATS 72 BATY 73 EDGA 74 EDGX 75 XBOS 76 XPSX 77 MEMX 78 XASE 79 ARCX
80 LTSE 81 XNAS 82 FINN 83 FINC 86 XBOS 87 XPSX 88 XBOS 89 XPSX 90 EQUS 91 XCIS 92 XNYS 93 EQUS 94 EQUS 95 EQUS
96 EQUS
"""
PUBLISHER_VENUES: dict[int, str] = {
    int(number): venue for number, venue in zip(_PUBLISHERS.split()[0::2], _PUBLISHERS.split()[1::2], strict=True)
}

# venue MIC → (Polygon exchange id, Polygon TRF id)
VENUE_EXCHANGES: dict[str, tuple[int, int]] = {
    "XASE": (1, 0),
    "XBOS": (2, 0),
    "XCIS": (3, 0),
    "FINY": (4, 201),
    "FINN": (4, 202),
    "FINC": (4, 203),
    "EDGA": (7, 0),
    "EDGX": (8, 0),
    "XCHI": (9, 0),
    "XNYS": (10, 0),
    "ARCX": (11, 0),
    "XNAS": (12, 0),
    "IEXG": (15, 0),
    "XPSX": (17, 0),
    "BATY": (18, 0),
    "BATS": (19, 0),
    "LTSE": (14, 0),
    "EPRL": (20, 0),
    "MEMX": (21, 0),
}


def venue_of(publisher_id: int) -> tuple[str, int, int]:
    """``(venue MIC, Polygon exchange id, Polygon TRF id)`` of a publisher; ``("", 0, 0)`` when unknown, and the
    exchange 0 for a consolidated publisher (``EQUS``, ``DBEQ``: no single venue)."""
    venue = PUBLISHER_VENUES.get(publisher_id, "")
    exchange, trf = VENUE_EXCHANGES.get(venue, (0, 0))
    return venue, exchange, trf
