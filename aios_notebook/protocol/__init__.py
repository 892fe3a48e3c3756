"""The AIOS v2 protocol without I/O: messages, codec, subscriptions and the session logic.

Standard library only (no asyncio, websockets or pandas), so it can be used anywhere and tested
without a socket.
"""

from .codec import Decoded, Message, Problem, decode, encode, format_timestamp, parse_timestamp
from .models import (
    CLIENT_EVENTS,
    CONNECTION_SCOPED,
    PUBLISHED_SERVER_EVENTS,
    SERVER_EVENTS,
    STREAM_EVENTS,
    SUBSCRIPTION_TYPES,
    TYPE_OF_EVENT,
    EventSpec,
)
from .session import ClientSession, ServerSession
from .subscriptions import Filters, Subscriptions

__all__ = [
    "CLIENT_EVENTS",
    "CONNECTION_SCOPED",
    "PUBLISHED_SERVER_EVENTS",
    "SERVER_EVENTS",
    "STREAM_EVENTS",
    "SUBSCRIPTION_TYPES",
    "TYPE_OF_EVENT",
    "ClientSession",
    "Decoded",
    "EventSpec",
    "Filters",
    "Message",
    "Problem",
    "ServerSession",
    "Subscriptions",
    "decode",
    "encode",
    "format_timestamp",
    "parse_timestamp",
]
