"""events -> columnar buffers -> cached pandas DataFrames (``docs/design.md``, section store/)."""

from .notify import ChangeBatch, Subscription
from .retention import DEFAULT_RETENTION
from .schema import TABLES
from .store import ERROR_KINDS, EventStore

__all__ = ["DEFAULT_RETENTION", "ERROR_KINDS", "TABLES", "ChangeBatch", "EventStore", "Subscription"]
