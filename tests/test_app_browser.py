"""The web app end to end, in headless Chromium driven by Playwright: upload an image, paint a stroke,
move the slider, and check the downloaded result changed where the stroke is and nowhere else; then
the same with a two-axis model (two sliders, the stroke painted on the second axis's editor).

Needs the ``app`` and ``test`` extras and Debian's Chromium (``apt-get install chromium``; CI's
``.ci/run`` installs it). Playwright never downloads a browser here: it drives ``/usr/bin/chromium``
(or ``$FTN_CHROMIUM``).
"""

from __future__ import annotations

import io
import os
import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio", reason="the web app is an optional extra: pip install -e .[app]")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright: pip install -e .[test]")

CHROMIUM = Path(os.environ.get("FTN_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set FTN_CHROMIUM)", allow_module_level=True)

import ftn  # noqa: E402
from ftn.app import AppConfig, launch  # noqa: E402
from ftn.data.images import load_image  # noqa: E402
from ftn.infer.apply import apply_model  # noqa: E402
from ftn.levels import level_to_alpha  # noqa: E402
from ftn.models import resolve  # noqa: E402

# Gradio's queue calls pandas APIs that pandas 3 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")

SIZE = 160  # image side: room for pixels far from the stroke, and still a fraction of a second per run
STROKE_ROW, STROKE_COLS = 80, (56, 104)  # the painted line, in image pixels
# Farther than this from the stroke's centre line, the output must not change: the brush's radius
# (Gradio's "auto" size, about 16 px here) plus the denoiser's reach plus slack. The shipped ResUNet sees
# far (3 scales): a painted disc changed 8-bit outputs by more than 1 up to 16 px beyond it, by 1 up to 34 px.
FAR = 56
TIMEOUT_MS = 180_000  # generous: the test machine may be busy with other work


def _launch(config: AppConfig) -> object:
    """:func:`launch`, with Gradio's start-up check given time: it allows its own server 3 s to answer
    a HEAD request, which a busy (or niced) test process may not meet."""
    import time

    import httpx
    from gradio import networking

    def patient(url: str) -> bool:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.head(url, timeout=10).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return False

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(networking, "url_ok", patient)
        return launch(config, block=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    port = _free_port()
    app = _launch(AppConfig(port=port))
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _open(browser: object, url: str) -> object:
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    return page


@pytest.fixture(scope="module")
def page(browser: object, url: str) -> object:
    return _open(browser, url)


@pytest.fixture(scope="module")
def two_axes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with two axes, sigma (anchors 5, 25, 50) x quality (90, 10), its tuners nudged off
    the identity so that both matter."""
    from ftn.methods.axes import AxisSpec, attach_axes

    torch.manual_seed(0)
    net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)
    model = attach_axes(net, "ftn", [AxisSpec("sigma", 3, levels=(5, 25, 50)), AxisSpec("quality", 2, levels=(90, 10))],
                        groups=4)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    path = tmp_path_factory.mktemp("app-axes") / "restore.safetensors"
    ftn.save(model.eval(), path)
    return path


@pytest.fixture(scope="module")
def local_page(browser: object) -> Iterator[object]:
    """The app with the local-model box, for a model file of the test's own."""
    port = _free_port()
    app = _launch(AppConfig(port=port, allow_local_models=True))
    try:
        yield _open(browser, f"http://127.0.0.1:{port}/")
    finally:
        app.close()


def _noisy_image(path: Path) -> Path:
    """A smooth colour ramp with Gaussian noise of sigma 50 (the denoiser has work everywhere)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    clean = np.stack([xx, yy, 0.3 + 0.4 * xx * yy], axis=-1)
    noisy = np.clip(clean + rng.normal(0, 50 / 255, clean.shape), 0, 1)
    Image.fromarray((noisy * 255).round().astype(np.uint8)).save(path)
    return path


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy().astype(np.int16)


def _upload(page: object, picture: Path, editor: str = "#ftn-editor") -> None:
    """Upload ``picture`` and wait until ``editor`` has fitted it to its canvas (its zoom settles)."""
    page.set_input_files("#ftn-upload input[type=file]", str(picture))
    page.locator("#ftn-status", has_text=f"{SIZE} x {SIZE} pixels").wait_for()
    page.wait_for_function(
        "(sel) => { const e = document.querySelector(sel); if (!e) return false;"  # shown after the model's update
        " const t = e.innerText; const m = t.match(/(\\d+)%/);"
        " const ok = m && !/processing/.test(t) && window.__ftnZoom === m[1]; window.__ftnZoom = m && m[1]; return ok; }",
        arg=editor, polling=300,
    )


def _paint_stroke(page: object, editor: str = "#ftn-editor") -> None:
    """Drag the brush along the stroke; screen positions from the editor's zoom, image centred."""
    editor = page.locator(editor)
    editor.get_by_role("button", name="Brush", exact=True).click()
    canvas = editor.locator("canvas").first
    box = canvas.bounding_box()
    zoom = float(re.search(r"(\d+)%", editor.inner_text()).group(1)) / 100
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def screen(col: float, row: float) -> tuple[float, float]:
        return cx + (col + 0.5 - SIZE / 2) * zoom, cy + (row + 0.5 - SIZE / 2) * zoom

    page.mouse.move(*screen(STROKE_COLS[0], STROKE_ROW))
    page.mouse.down()
    for col in range(STROKE_COLS[0], STROKE_COLS[1] + 1, 4):
        page.mouse.move(*screen(col, STROKE_ROW))
    page.mouse.up()


def _drag_slider(page: object, to: float, slider: str = "#ftn-alpha") -> None:
    """Move a slider with the mouse to ``to`` (a share of its range), so that letting go fires its release event."""
    track = page.locator(f"{slider} input[type=range]")
    box = track.bounding_box()
    y = box["y"] + box["height"] / 2
    now = float(track.input_value()) / float(track.get_attribute("max"))
    page.mouse.move(box["x"] + box["width"] * now, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * to, y, steps=8)
    page.mouse.up()


def _result(page: object, run: int) -> np.ndarray:
    """Wait for result number ``run`` and download it (the PNG offered for download)."""
    link = page.locator(f"#ftn-download a[download$='-{run}.png']")
    link.wait_for()
    with urllib.request.urlopen(link.get_attribute("href"), timeout=30) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB")).astype(np.int16)


def test_painted_stroke_changes_the_output_only_where_painted(page: object, tmp_path: Path) -> None:
    picture = _noisy_image(tmp_path / "noisy.png")
    # The shipped denoise: one axis, three anchors, labelled with real levels; alpha runs 0 ... 2.
    page.locator("#ftn-alpha", has_text="sigma: 20 · 50 · 80").wait_for()
    assert page.locator("#ftn-alpha input[type=range]").get_attribute("max") == "2"

    _upload(page, picture)
    _paint_stroke(page)
    page.get_by_label("painted area").check()
    _drag_slider(page, 0.85)
    out = _result(page, 1)
    alpha = float(page.locator("#ftn-alpha input[type=number]").input_value())
    assert 1.4 < alpha <= 2.0

    model = ftn.load(resolve("denoise"))
    x = load_image(picture).image
    at_zero = _to_uint8(apply_model(model, x, alpha=0.0))
    at_alpha = _to_uint8(apply_model(model, x, alpha=alpha))
    assert out.shape == at_zero.shape == (SIZE, SIZE, 3)

    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    nearest_col = np.clip(cols, *STROKE_COLS)
    distance = np.hypot(rows - STROKE_ROW, cols - nearest_col)  # to the stroke's centre line
    far = distance > FAR
    assert far.mean() > 0.3  # the check below covers a good part of the image
    changed = np.abs(out - at_zero).max(axis=-1)
    assert changed[far].max() <= 1, "pixels far from the stroke must keep the alpha=0 output (up to rounding)"

    line = (rows == STROKE_ROW) & (cols >= STROKE_COLS[0] + 4) & (cols <= STROKE_COLS[1] - 4)
    assert (changed[line] > 2).mean() > 0.9, "the painted stroke must change the output"
    # ... towards the slider's level: on the stroke the output is nearer the alpha output than alpha 0
    err_alpha = np.abs(out - at_alpha)[line].mean()
    err_zero = np.abs(out - at_zero)[line].mean()
    assert err_alpha < 0.5 * err_zero

    # The changed area is the stroke (not some other place): its centre of mass is on the line.
    weights = (changed > 2).astype(float)
    centre_row = (rows * weights).sum() / weights.sum()
    centre_col = (cols * weights).sum() / weights.sum()
    assert abs(centre_row - STROKE_ROW) < 4 and abs(centre_col - sum(STROKE_COLS) / 2) < 4

    # Auto level: the noise of this image is sigma 50; the estimate moves the slider and runs again.
    page.locator("#ftn-auto").click()
    note = page.locator("#ftn-auto-note", has_text="estimated noise sigma")
    note.wait_for()
    sigma = float(re.search(r"sigma ([\d.]+)", note.inner_text()).group(1))
    assert 40 < sigma < 60
    _result(page, 2)
    auto_alpha = float(page.locator("#ftn-alpha input[type=number]").input_value())
    assert abs(auto_alpha - level_to_alpha(model.metadata, sigma)[0]) < 0.011  # slider step 0.01


def _value(page: object, slider: str) -> float:
    return float(page.locator(f"{slider} input[type=number]").input_value())


def test_two_axes_two_sliders_and_a_stroke_on_the_second_axis(local_page: object, two_axes: Path, tmp_path: Path) -> None:
    """A two-axis model shows two sliders labelled by their anchors; a stroke on the quality editor
    changes quality there only, sigma taking its slider everywhere."""
    page = local_page
    picture = _noisy_image(tmp_path / "noisy.png")
    # Chosen as soon as the box shows, maybe while the page's own load event runs: the app runs the two
    # one after the other (interleaved, the load's updates hid the second editor on a busy machine).
    page.locator("#ftn-local textarea, #ftn-local input").first.fill(str(two_axes))
    page.locator("#ftn-local textarea, #ftn-local input").first.press("Enter")
    page.locator("#ftn-alpha", has_text="sigma: 5 · 25 · 50").wait_for()
    page.locator("#ftn-alpha-2", has_text="quality: 90 · 10").wait_for()
    assert page.locator("#ftn-alpha input[type=range]").get_attribute("max") == "2"
    assert not page.locator("#ftn-alpha-3").is_visible() and not page.locator("#ftn-editor-3").is_visible()

    page.locator("#ftn-editor-2").wait_for()  # the second editor appears with the model's update
    _upload(page, picture, "#ftn-editor-2")
    _paint_stroke(page, "#ftn-editor-2")  # quality only
    page.get_by_label("painted area").check()
    _drag_slider(page, 0.5, "#ftn-alpha")  # sigma to about 1 (anchor 25): runs, sigma everywhere, quality on the stroke at 0
    _result(page, 1)
    _drag_slider(page, 0.9, "#ftn-alpha-2")  # quality: runs again
    out = _result(page, 2)
    sigma, quality = _value(page, "#ftn-alpha"), _value(page, "#ftn-alpha-2")
    assert 0.6 < sigma < 1.4 and 0.7 < quality <= 1.0
    assert page.locator("#ftn-status", has_text=f"sigma alpha {sigma:.4g}").count() == 1

    model = ftn.load(two_axes)
    x = load_image(picture).image
    unpainted = _to_uint8(apply_model(model, x, alpha={"sigma": sigma, "quality": 0.0}))
    painted = _to_uint8(apply_model(model, x, alpha={"sigma": sigma, "quality": quality}))
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    distance = np.hypot(rows - STROKE_ROW, cols - np.clip(cols, *STROKE_COLS))
    far = distance > FAR
    changed = np.abs(out - unpainted).max(axis=-1)
    assert changed[far].max() <= 1, "far from the stroke: sigma's slider, quality 0 (up to rounding)"
    line = (rows == STROKE_ROW) & (cols >= STROKE_COLS[0] + 4) & (cols <= STROKE_COLS[1] - 4)
    assert (changed[line] > 2).mean() > 0.9, "the quality stroke must change the output"
    assert np.abs(out - painted)[line].mean() < 0.5 * np.abs(out - unpainted)[line].mean()
