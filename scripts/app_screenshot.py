"""Write ``docs/app.png``: the web app with the shipped two-axis ``restore`` model, the noisy, compressed
sample photo loaded, both sliders set by "Auto level" (noise and quality read from the JPEG file)
and the result.

    .venv/bin/python scripts/app_screenshot.py [--out docs/app.png] [--model restore] [--sample samples/...]
    .venv/bin/python scripts/app_screenshot.py --model denoise --sample samples/amber-noisy-sigma50.png

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
SAMPLE = ROOT / "samples" / "amber-sigma30-q30.jpg"
CHROMIUM = os.environ.get("FTN_CHROMIUM", "/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def capture(out: Path, model: str = "restore", sample: Path = SAMPLE) -> None:
    """Run the app on ``model`` and save the screenshot to ``out``."""
    port = _free_port()
    app = launch(AppConfig(port=port, default_model=model), block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1360, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#ftn-summary", has_text="task").wait_for()  # the model's sliders are in place
            page.set_input_files("#ftn-upload input[type=file]", str(sample))
            page.locator("#ftn-status", has_text="pixels").wait_for()
            page.wait_for_timeout(2000)  # the editors fit the image to their canvas
            page.locator("#ftn-auto").click()  # sets every axis it can estimate, then runs
            page.locator("#ftn-auto-note", has_text="Auto").wait_for()
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
    parser.add_argument("--model", default="restore", help="a shipped model's name (default: restore)")
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="the picture to load")
    args = parser.parse_args()
    capture(args.out, args.model, args.sample)


if __name__ == "__main__":
    main()
