"""One-off lookups: a knowledge search as a DataFrame, one DAG run with its steps as a dict.

Both take the server's dialect (None: the published protocol) and ask its route; one it lacks is an
``UnsupportedRoute`` raised before any request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..exceptions import APIError, ConfigurationError
from ..protocol.dialects import Dialect
from .http import RestClient
from .routes import route
from .snapshot import normalise

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["KNOWLEDGE_COLUMNS", "check_search", "get_dag_run", "search_knowledge"]

#: the columns of a knowledge search, first those of the store's knowledge table
KNOWLEDGE_COLUMNS = ("item_id", "title", "type", "source_job", "tags", "created_at", "updated_at",
                     "updated_fields", "update_count", "summary")
_MAX_LIMIT = 1000


def check_search(q: str | None, type: str | None, tags: str | Iterable[str] | None, limit: int) -> dict[str, Any]:
    """The query parameters of a knowledge search, checked (raises ConfigurationError)."""
    if q is not None and not isinstance(q, str):
        raise ConfigurationError(f"q must be a string, got {q.__class__.__name__}")
    if type is not None and not isinstance(type, str):
        raise ConfigurationError(f"type must be a string, got {type.__class__.__name__}")
    if isinstance(tags, str):
        tag_list = [tags]
    elif tags is None:
        tag_list = []
    else:
        tag_list = list(tags)
        if not all(isinstance(tag, str) for tag in tag_list):
            raise ConfigurationError(f"tags must be strings, got {tag_list!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
        raise ConfigurationError(f"limit must be an integer from 1 to {_MAX_LIMIT}, got {limit!r}")
    return {"q": q or None, "type": type, "tags": tag_list or None, "limit": limit}


async def search_knowledge(
    rest: RestClient,
    q: str | None = None,
    type: str | None = None,  # the API's parameter name
    tags: str | Iterable[str] | None = None,
    limit: int = 20,
    *,
    dialect: Dialect | None = None,
) -> pd.DataFrame:
    """``GET /api/knowledge/search``: matching knowledge items, newest first as the server orders them.

    Returns:
        One row per item: the knowledge table's columns (timestamps as UTC datetimes) and whatever
        else the server sends (e.g. ``summary``).

    Raises:
        UnsupportedRoute: the server's dialect has no knowledge search.
    """
    import pandas as pd

    params = check_search(q, type, tags, limit)
    path = route(dialect, "knowledge_search", "search_knowledge")
    answer = await rest.get(path, params)
    raw = answer.get("items") if isinstance(answer, dict) else answer
    if not isinstance(raw, list):
        raise APIError(f"GET {path}", 200, f"expected a list of items, got {str(answer)[:200]!r}")
    records = [item for item in raw if isinstance(item, dict)]
    known = {row["item_id"]: row for row in normalise("knowledge", records, None)}  # type: ignore[arg-type]
    rows = []
    for record in records:
        item_id = str(record.get("item_id") or record.get("id") or "")
        rows.append({**record, **known.get(item_id, {})})
    columns = list(KNOWLEDGE_COLUMNS) + sorted({k for row in rows for k in row} - set(KNOWLEDGE_COLUMNS))
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("created_at", "updated_at"):
        # the store's timestamp dtype (pandas 3 would pick microseconds)
        parsed = pd.to_datetime(frame[column], utc=True, errors="coerce", format="ISO8601")
        frame[column] = parsed.astype("datetime64[ns, UTC]")
    return frame


async def get_dag_run(rest: RestClient, run_id: str, *, dialect: Dialect | None = None) -> dict[str, Any]:
    """``GET /api/workflows/dag-runs/{run_id}`` (the dialect's run route): the run with its steps,
    as the server answers it (``rest.published_run`` adds the published names).

    Raises:
        ConfigurationError: ``run_id`` is not a non-empty string.
        UnsupportedRoute: the server's dialect has no route to one run.
        APIError: 404 for an unknown run (naming the endpoint), or any other failure.
    """
    if not isinstance(run_id, str) or not run_id:
        raise ConfigurationError(f"run_id must be a non-empty string, got {run_id!r}")
    # run ids look like manual__2023-01-01T00:00:00+00:00: every reserved character is escaped
    path = route(dialect, "dag_run", "get_dag_run", run_id=quote(run_id, safe=""))
    answer = await rest.get(path)
    if not isinstance(answer, dict):
        raise APIError(f"GET {path}", 200, f"expected an object, got {str(answer)[:200]!r}")
    return answer
