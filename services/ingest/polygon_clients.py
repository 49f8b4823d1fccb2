"""The two Python clients of Polygon/Massive's API, behind one small adapter: ``massive`` (Massive's maintained
client, v2; the services' default) and ``polygon-api-client`` (the package Polygon shipped until its 1.16 LTS line,
which the robinhood bot pins). Both speak the same WebSocket protocol and REST API and have the same classes:
``WebSocketClient``, ``RESTClient`` and ``AuthError`` — only the package name and the default hosts differ
(Massive's ``socket.massive.com`` / ``api.massive.com``; Polygon's ``polygon.io`` hosts stay in service for an
extended period). ``ORDER_FLOW_POLYGON_CLIENT`` chooses; the hosts are their own settings.

Imported lazily: a command that never talks to Polygon never pays for either client (~0.3 s)::

    classes = client_classes("massive")
    client = classes.websocket(api_key=key, feed="socket.massive.com", market="stocks", raw=True, ...)
"""

from __future__ import annotations

import importlib
from typing import Any, Literal, NamedTuple

PolygonClientName = Literal["massive", "polygon-api-client"]
PACKAGES: dict[str, str] = {"massive": "massive", "polygon-api-client": "polygon"}
"""Client name (the setting's value, as on PyPI) → the package it imports."""


class ClientClasses(NamedTuple):
    """One client's classes: its WebSocket client, its REST client and the error its WebSocket raises on a refused
    key."""

    websocket: Any
    rest: Any
    auth_error: type[Exception]


def client_classes(name: PolygonClientName) -> ClientClasses:
    """The classes of the client ``name`` (``massive`` or ``polygon-api-client``)."""
    package = importlib.import_module(PACKAGES[name])
    exceptions = importlib.import_module(f"{PACKAGES[name]}.exceptions")
    return ClientClasses(package.WebSocketClient, package.RESTClient, exceptions.AuthError)
