"""KnowledgeView: newest knowledge items, counts by type and tag, and a search over titles and tags."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import ipywidgets as widgets
import pandas as pd

from ..storelike import StoreSource
from .base import Rendered, View
from .frames import Frames
from .markup import chip, empty, esc, table, text_of
from .theme import PALETTE, axis, base_layout, count_axis, empty_figure, format_time

__all__ = ["KnowledgeView"]


def _tags(value: Any) -> list[str]:
    """A tags cell (list, array, or comma-separated text) as a list of strings."""
    if value is None or isinstance(value, float):
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    try:
        return [str(t) for t in value if t is not None]
    except TypeError:
        return []


class KnowledgeView(View):
    """The newest knowledge items (title, type, tags, source job), counts by type and by tag,
    and a search box over titles and tags.

    Args:
        store: the EventStore (or a client).
        search: initial search text (case-insensitive; every word must match a title or a tag).
        max_items: rows in the table; ``top_tags``: tags in the chart.
        **kwargs: ``max_redraws_per_second``, ``scheduler`` (see :class:`~.base.View`).
    """

    title = "Knowledge repository"
    tables: ClassVar[tuple[str, ...]] = ("knowledge",)
    slots: ClassVar[tuple[str, ...]] = ("summary", "figure", "items")

    def __init__(self, store: StoreSource, *, search: str = "", max_items: int = 15, top_tags: int = 12,
                 **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self._search_lock = threading.Lock()
        self._search = str(search)
        self.max_items = int(max_items)
        self.top_tags = int(top_tags)
        self._search_box: widgets.Text | None = None

    @property
    def search(self) -> str:
        """The search text."""
        with self._search_lock:
            return self._search

    @search.setter
    def search(self, text: str) -> None:
        with self._search_lock:
            self._search = str(text)
        if self._search_box is not None and self._search_box.value != self._search:
            self._search_box.value = self._search
        self._changed()

    def _controls(self) -> list[widgets.Widget]:
        self._search_box = widgets.Text(value=self.search, placeholder="search titles and tags",
                                        description="search", continuous_update=True,
                                        layout=widgets.Layout(width="340px"))
        self._search_box.observe(self._on_search, names="value")
        return [self._search_box]

    def _on_search(self, change: dict[str, Any]) -> None:
        with self._search_lock:
            self._search = str(change["new"])
        self._changed()

    def _matches(self, items: pd.DataFrame) -> pd.Series:
        words = self.search.lower().split()
        haystack = (items["title"].map(text_of).str.lower() + " " + items["tag_list"].map(" ".join).str.lower())
        keep = pd.Series(True, index=items.index)
        for word in words:
            keep &= haystack.str.contains(word, regex=False)
        return keep

    def _render(self, frames: Frames) -> Rendered:
        items = frames["knowledge"]
        if items.empty:
            message = "waiting for knowledge items..."
            return Rendered(empty_figure(message, uirevision="knowledge"), {"summary": "", "items": empty(message)},
                            {"total": 0, "shown": 0, "by_type": {}, "by_tag": {}})
        created = pd.to_datetime(items["created_at"], utc=True, errors="coerce")
        items = items.assign(tag_list=items["tags"].map(_tags), created=created,
                             type=items["type"].astype("string").fillna("unknown"))
        by_type = {str(k): int(v) for k, v in items["type"].value_counts().items()}
        tag_counts = items["tag_list"].explode().dropna().value_counts()
        by_tag = {str(k): int(v) for k, v in tag_counts.items()}
        matched = items[self._matches(items).to_numpy()].sort_values("created", ascending=False, na_position="last")
        search = self.search.strip()
        summary = (f'<div class="aios-summary">{len(items):,} knowledge items, {len(by_type)} types, '
                   f'{len(by_tag)} tags' + (f'; {len(matched):,} match “{esc(search)}”' if search else "") + ".</div>")
        panels = {"summary": summary, "items": self._table(matched, search)}
        values = {"total": len(items), "shown": len(matched), "by_type": by_type, "by_tag": by_tag,
                  "shown_ids": matched["item_id"].astype("string").head(self.max_items).tolist()}
        return Rendered(self._figure(by_type, tag_counts), panels, values)

    def _table(self, matched: pd.DataFrame, search: str) -> str:
        if matched.empty:
            return empty(f"no knowledge item matches “{search}”" if search else "no knowledge items yet")
        rows = []
        for item in matched.head(self.max_items).itertuples(index=False):
            updates = pd.to_numeric(item.update_count, errors="coerce")
            rows.append((
                f"<b>{esc(item.title)}</b>",
                esc(item.type),
                "".join(chip(t) for t in item.tag_list),
                esc(item.source_job),
                esc(format_time(item.created)),
                f"{int(updates)}" if updates == updates and updates else "",
            ))
        more = len(matched) - self.max_items
        tail = f'<div class="aios-muted">… and {more:,} older items</div>' if more > 0 else ""
        return table(("title", "type", "tags", "source job", "created", "updates"), rows) + tail

    def _figure(self, by_type: dict[str, int], tag_counts: pd.Series) -> dict[str, Any]:
        """Items per type beside the most used tags."""
        tags = tag_counts.head(self.top_tags)
        types = sorted(by_type.items(), key=lambda kv: -kv[1])
        data = [
            {"type": "bar", "name": "items by type", "x": [t for t, _ in types], "y": [n for _, n in types],
             "marker": {"color": PALETTE["teal"]}, "hovertemplate": "%{x}: %{y:,} items<extra></extra>"},
            {"type": "bar", "name": "items by tag", "x": [str(t) for t in tags.index], "y": tags.tolist(),
             "xaxis": "x2", "yaxis": "y2", "marker": {"color": PALETTE["purple"]},
             "hovertemplate": "%{x}: %{y:,} items<extra></extra>"},
        ]
        layout = base_layout(height=280, uirevision="knowledge", showlegend=False)
        layout["xaxis"] = axis("item type", domain=[0, 0.36])
        layout["yaxis"] = count_axis("items", max(by_type.values(), default=0))
        layout["xaxis2"] = axis(f"tag (top {len(tags)})", domain=[0.44, 1], anchor="y2", tickangle=-35)
        layout["yaxis2"] = count_axis("items", int(tags.max()) if len(tags) else 0, anchor="x2")
        return {"data": data, "layout": layout}
