"""The kit's whole error tree, in one place.

::

    AIOSError                       base of everything the kit raises on purpose
    ├── ConfigurationError          bad argument or option given by the user (also a ValueError)
    ├── ProtocolError               a peer broke the protocol in a way we cannot work around
    ├── AuthError                   wrong or missing token (close 4401, error auth_failed, HTTP 401/403)
    ├── ConnectionLost              the stream is gone and will not come back (reconnects exhausted)
    ├── APIError                    a REST call failed: endpoint, status and the server's message
    │   └── UploadError             an upload could not be started (bad path, unknown kind ...)
    ├── RecordingError              a recording cannot be read or written
    │   └── CorruptLog              a line of a recording is torn, not JSON or not gzip: file + line
    ├── RuleError                   a rule is declared wrongly or failed while running
    │   ├── RuleTimeout             a rule ran longer than it may
    │   └── RuleResultError         a rule returned something that is not an Insight
    └── ReportError                 a report notebook failed: the failing cell is named

    AIOSWarning (UserWarning)       things worth seeing that do not stop anything

No exception message ever holds a token: the places that build messages from requests use
:func:`redact` on anything that may carry one.
"""

from __future__ import annotations

import re

__all__ = [
    "SHORT_SECRET",
    "AIOSError",
    "AIOSWarning",
    "APIError",
    "AuthError",
    "ConfigurationError",
    "ConnectionLost",
    "CorruptLog",
    "ProtocolError",
    "RecordingError",
    "ReportError",
    "RuleError",
    "RuleResultError",
    "RuleTimeout",
    "UnsupportedRoute",
    "UploadError",
    "redact",
]


class AIOSError(Exception):
    """Base class of every error the kit raises on purpose."""


class AIOSWarning(UserWarning):
    """A warning of the kit's own (pytest turns these into errors in the suite)."""


class ConfigurationError(AIOSError, ValueError):
    """A bad argument, option or environment value given by the user."""


class ProtocolError(AIOSError):
    """The peer broke the protocol in a way that cannot be worked around."""


class AuthError(AIOSError):
    """The server refused the token (WebSocket close 4401 / error auth_failed, HTTP 401 / 403)."""

    def _render_traceback_(self) -> list[str]:
        # IPython / Jupyter show this instead of a traceback: a wrong token is not a bug in the cell
        return [f"{type(self).__name__}: {self}"]


class ConnectionLost(AIOSError):
    """The connection is gone for good (the bounded number of reconnects was used up)."""


class APIError(AIOSError):
    """A REST call failed.

    Attributes:
        endpoint: method and path, e.g. ``GET /api/agents``.
        status: HTTP status, or None when no response came.
        server_message: what the server said, if anything.
    """

    def __init__(self, endpoint: str, status: int | None, server_message: str = "") -> None:
        self.endpoint = endpoint
        self.status = status
        self.server_message = server_message
        where = f"{endpoint} answered {status}" if status is not None else f"{endpoint} failed"
        super().__init__(f"{where}: {server_message}" if server_message else where)


class UploadError(APIError):
    """An upload or submission could not be started (raised before any request is made)."""

    def __init__(self, message: str) -> None:
        AIOSError.__init__(self, message)
        self.endpoint = ""
        self.status = None
        self.server_message = message


class UnsupportedRoute(AIOSError):
    """The server's dialect has no REST route for the call (raised before any request is made).

    Attributes:
        dialect: the name of the dialect the server speaks, e.g. ``autopilot``.
        operation: the call, as the user wrote it, e.g. ``search_knowledge``.
        route: the published route it lacks, e.g. ``GET /api/knowledge/search``.
    """

    def __init__(self, dialect: str, operation: str, route: str) -> None:
        self.dialect = dialect
        self.operation = operation
        self.route = route
        super().__init__(f"the server speaks the {dialect!r} dialect, which has no route for "
                         f"{operation} ({route})")

    def _render_traceback_(self) -> list[str]:
        # the server cannot do it: a fact about the deployment, not a bug in the cell
        return [f"{type(self).__name__}: {self}"]


class RecordingError(AIOSError):
    """A recording cannot be read or written."""


class CorruptLog(RecordingError):
    """A line of a recording is torn, not JSON, or the gzip stream is corrupt.

    Attributes:
        path: the file.
        line: 1-based line number (0 when the problem is not tied to a line).
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {reason}")


class RuleError(AIOSError):
    """A rule is declared wrongly, or failed while being evaluated."""


class RuleTimeout(RuleError):
    """A rule ran longer than its time limit."""


class RuleResultError(RuleError):
    """A rule returned something other than Insights (or None)."""


class ReportError(AIOSError):
    """A report notebook failed; ``cell`` is the index of the failing cell, ``partial`` the HTML left."""

    def __init__(self, message: str, cell: int | None = None, partial: str | None = None) -> None:
        self.cell = cell
        self.partial = partial
        super().__init__(message)


_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    re.compile(r"(?i)((?:token|auth)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"),
]


#: secrets shorter than this are masked only where they stand as a whole word: replacing every
#: occurrence of a one-letter token would garble every message ("con***ected")
SHORT_SECRET = 8


def redact(text: str, *secrets: str | None) -> str:
    """Return ``text`` with the given secrets and anything that looks like a token masked."""
    for secret in secrets:
        if not secret:
            continue
        if len(secret) >= SHORT_SECRET:
            text = text.replace(secret, "***")
        else:
            text = re.sub(rf"(?<![\w-]){re.escape(secret)}(?![\w-])", "***", text)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text
