"""Which REST route a call takes on the server's dialect, and the clear error when it has none.

Every path the ``rest`` layer requests comes from a :class:`~aios_notebook.protocol.dialects.Routes`:
the connection's dialect's (``autopilot`` has ``GET /api/dag-runs``, the published API
``GET /api/workflows/dag-runs``), or the published ones while the dialect is not known yet. A route
the dialect lacks is an :class:`~aios_notebook.exceptions.UnsupportedRoute` raised before any
request, naming the dialect and the published route, rather than a 404 from the server.
"""

from __future__ import annotations

from ..exceptions import UnsupportedRoute
from ..protocol.dialects import Dialect, Routes, get_dialect
from ..protocol.models import PROTOCOL_NAME

__all__ = ["PUBLISHED_ROUTES", "published_dialect", "route"]

#: the published AIOS v2 routes (``Routes``' defaults): what a server of unknown dialect is asked
PUBLISHED_ROUTES = Routes()


def published_dialect() -> Dialect:
    """The published protocol's dialect (``"aios-v2"``)."""
    return get_dialect(PROTOCOL_NAME)


def route(dialect: Dialect | None, name: str, operation: str, method: str = "GET", **values: str) -> str:
    """The path of route ``name`` (a :class:`Routes` attribute) on ``dialect`` (None: published).

    ``values`` fill the path's placeholders (``run_id`` ...); quote them first.

    Raises:
        UnsupportedRoute: the dialect has no such route (``operation`` names the call in the message).
    """
    dialect = dialect if dialect is not None else published_dialect()
    path = dialect.routes.path(name, **values)
    if path is None:
        published = getattr(PUBLISHED_ROUTES, name, None)
        shown = f"{method} {published}" if published else name
        raise UnsupportedRoute(dialect.name, operation, shown)
    return path
