"""What the dashboard's browser tests share besides their fixtures (conftest.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("TUNEFLEET_ARTIFACTS", "test-artifacts")) / "screenshots"
# Waits in the browser: the stack is already up, but the machine may be busy.
WAIT_MS = 30_000


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def x_ticks(page: Page, parameter: str) -> list[str]:
    """The labels drawn under the x axis of a job page's plot of ``parameter``."""
    figure = page.locator("#scatter figure", has=page.locator(f'figcaption:text-is("{parameter}")'))
    labels: list[str] = json.loads(figure.locator(".plot").get_attribute("data-x-ticks") or "[]")
    return labels
