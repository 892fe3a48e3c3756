"""Shared test settings. Fixtures of one part live in that part's test modules."""

from __future__ import annotations

import os

import pytest


def pytest_report_header(config: pytest.Config) -> str:
    return f"aios-notebook tests (CI={os.environ.get('CI', 'false')})"


@pytest.fixture(params=["chosen per batch", "arrow first", "msgspec alone"])
def store_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The store's batched parse engines for one run: every equivalence and odd-frame test of the
    store runs over each (as pandas' ``all_parsers`` does), the reference engine taking whatever
    they leave and building the tables they are compared with. "chosen per batch" is the
    dispatcher's own choice (Arrow then msgspec for large batches, msgspec for small ones);
    "arrow first" gives every batch, whatever its size, to Arrow, and what it rejects to msgspec
    (Arrow leaves whole groups of up to 16 frames around an odd one, as the dispatcher's chain
    does); "msgspec alone" gives every batch to msgspec, large ones too."""
    from aios_notebook.store.parse import ENGINES, dispatch

    chains = {"arrow first": (ENGINES["arrow"], ENGINES["msgspec"]), "msgspec alone": (ENGINES["msgspec"],)}
    if request.param in chains:
        monkeypatch.setattr(dispatch, "engines_for", lambda count, small: chains[request.param])
    return str(request.param)
