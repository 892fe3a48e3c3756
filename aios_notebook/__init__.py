"""aios-notebook: the Jupyter kit for the AIOS v2 event stream.

Quick start in a notebook::

    import aios_notebook as aios
    client = aios.connect()          # AIOS_URL / AIOS_TOKEN, or the embedded reference server
    client.store.jobs                # live pandas DataFrames
    aios.views.Dashboard(client)     # live views

Heavy modules (pandas, websockets, ipywidgets, plotly) are imported lazily, on first use of the name
that needs them, so ``import aios_notebook`` stays fast and ``aios_notebook.protocol`` stays stdlib-only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .exceptions import (
    AIOSError,
    AIOSWarning,
    APIError,
    AuthError,
    ConfigurationError,
    ConnectionLost,
    CorruptLog,
    ProtocolError,
    RecordingError,
    ReportError,
    RuleError,
    RuleResultError,
    RuleTimeout,
    UnsupportedRoute,
    UploadError,
)

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "AIOSClient": "aios_notebook.client",
    "connect": "aios_notebook.client",
    "EventStore": "aios_notebook.store",
    "Simulator": "aios_notebook.server",
    "Insight": "aios_notebook.rules",
    "RuleEngine": "aios_notebook.rules",
    "rule": "aios_notebook.rules",
    "backtest": "aios_notebook.rules",
    "score": "aios_notebook.rules",
    "Dialect": "aios_notebook.protocol.dialects",
    "EventMap": "aios_notebook.protocol.dialects",
    "register_dialect": "aios_notebook.protocol.dialects",
}
_SUBMODULES = {"protocol", "store", "views", "rules", "server", "client", "cli", "testing", "clock"}

__all__ = [
    "AIOSClient",
    "AIOSError",
    "AIOSWarning",
    "APIError",
    "AuthError",
    "ConfigurationError",
    "ConnectionLost",
    "CorruptLog",
    "Dialect",
    "EventMap",
    "EventStore",
    "Insight",
    "ProtocolError",
    "RecordingError",
    "ReportError",
    "RuleEngine",
    "RuleError",
    "RuleResultError",
    "RuleTimeout",
    "Simulator",
    "UnsupportedRoute",
    "UploadError",
    "__version__",
    "backtest",
    "connect",
    "register_dialect",
    "rule",
    "score",
]

if TYPE_CHECKING:  # pragma: no cover
    from .client import AIOSClient, connect
    from .protocol.dialects import Dialect, EventMap, register_dialect
    from .rules import Insight, RuleEngine, backtest, rule, score
    from .server import Simulator
    from .store import EventStore


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'aios_notebook' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | _SUBMODULES)
