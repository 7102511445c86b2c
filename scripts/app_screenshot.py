"""Write ``docs/app.png``: the web app with the noisy sample photo loaded, a painted area and a result.

    .venv/bin/python scripts/app_screenshot.py [--out docs/app.png]

Starts the app on a free local port, drives it in headless Chromium (Debian's ``/usr/bin/chromium``,
or ``$FTN_CHROMIUM``; Playwright never downloads a browser) and saves a screenshot of the page,
reduced to 192 colours so that it stays small enough to commit.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from ftn.app import AppConfig, launch

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "amber-noisy-sigma50.png"
CHROMIUM = os.environ.get("FTN_CHROMIUM", "/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def capture(out: Path) -> None:
    """Run the app and save the screenshot to ``out``."""
    port = _free_port()
    app = launch(AppConfig(port=port), block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator(".ftn-ends", has_text="sigma 80").wait_for()
            page.set_input_files("#ftn-upload input[type=file]", str(SAMPLE))
            page.locator("#ftn-status", has_text="pixels").wait_for()
            page.wait_for_timeout(2000)  # the editor fits the image to its canvas

            # A diagonal brush stroke across the photo, then the painted-area mode.
            editor = page.locator("#ftn-editor")
            editor.get_by_role("button", name="Brush", exact=True).click()
            box = editor.locator("canvas").first.bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(cx - 100, cy - 60)
            page.mouse.down()
            for step in range(1, 21):
                page.mouse.move(cx - 100 + 10 * step, cy - 60 + 6 * step)
            page.mouse.up()
            page.get_by_label("painted area").check()

            # Let go of the slider at about sigma 50: that runs the model.
            track = page.locator("#ftn-alpha input[type=range]")
            b = track.bounding_box()
            page.mouse.move(b["x"] + b["width"] * 0.5, b["y"] + b["height"] / 2)
            page.mouse.down()
            page.mouse.move(b["x"] + b["width"] * 0.65, b["y"] + b["height"] / 2, steps=6)
            page.mouse.up()
            page.locator("#ftn-status", has_text="Done").wait_for()
            page.wait_for_timeout(1000)
            shot = page.screenshot(full_page=True)
            browser.close()
    finally:
        app.close()
    image = Image.open(io.BytesIO(shot)).convert("RGB").quantize(colors=192, dither=Image.Dither.NONE)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "app.png")
    capture(parser.parse_args().out)


if __name__ == "__main__":
    main()
