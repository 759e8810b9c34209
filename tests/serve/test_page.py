"""The live page in a real browser: Debian's headless Chromium driven by Playwright.

It picks the pipeline, sends the sample statement, and sees the timeline rows arrive from the
stream and the counters panel fill. The screenshot is kept in the test's tmp folder; with
GENIE_UPDATE_SCREENSHOT=1 it also replaces docs/serve-live-page.png.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..conftest import must_skip, optional
from .conftest import ALICE, ROOT, csv_body, finance, keyring, serving

optional("playwright", "browser")
from playwright.async_api import async_playwright, expect  # noqa: E402 (after the skip)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not Path(CHROMIUM).exists():
    must_skip("Debian's chromium is not installed (.ci/run installs it)")


async def test_live_page_shows_the_timeline_and_counters(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client, async_playwright() as pw:
        browser = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1100, "height": 900},
        )
        try:
            page = await browser.new_page()
            await page.goto(str(client.base_url))
            await page.fill("#key", ALICE)
            await page.dispatch_event("#key", "change")
            await expect(page.locator("#pipeline option")).to_have_text(["finance"])
            await page.fill("#payload", json.dumps(csv_body()))
            await page.click("#send")
            await expect(page.locator("#timeline tr.result")).to_have_count(1, timeout=10_000)
            await expect(page.locator("#status")).to_have_text("ok")
            rows = await page.locator("#timeline tbody tr").all_inner_texts()
            handled = page.locator("#counters td").get_by_text("handled", exact=True)
            await expect(handled).to_have_count(1)
            shot = tmp_path / "serve-live-page.png"
            await page.screenshot(path=str(shot), full_page=False)
        finally:
            await browser.close()
    assert any("handled" in r and "reporter" in r for r in rows)
    assert any("accepted" in r for r in rows)
    assert rows[-1].split("\t")[1] == "result"
    assert shot.stat().st_size > 10_000
    if os.environ.get("GENIE_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, ROOT / "docs/serve-live-page.png")
