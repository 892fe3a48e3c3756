"""Shared test settings. Fixtures of one part live in that part's test modules."""

from __future__ import annotations

import os

import pytest


def pytest_report_header(config: pytest.Config) -> str:
    return f"aios-notebook tests (CI={os.environ.get('CI', 'false')})"
