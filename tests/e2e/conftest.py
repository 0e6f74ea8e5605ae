"""End-to-end fixtures: `processes` (see processes.py)."""
from __future__ import annotations

import pytest

from .processes import processes  # noqa: F401  (the fixture)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so `processes` knows whether to print logs."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
