"""The Gradio page of ``ftn app`` and its event handlers.

Handlers are thin: they read the controls, call :mod:`ftn.app.controls`, :mod:`ftn.app.uploads` and
:mod:`ftn.app.engine`, and turn their ``ValueError`` messages into Gradio error pop-ups.

The page has :data:`~ftn.app.controls.MAX_AXES` sliders and paint editors, shown or hidden per model
(the standard Gradio pattern for a varying number of controls): a one-axis model shows the first of
each, as the page always did; a model with D axes shows D, slider d labelled with axis d's anchors and
editor d painting axis d.
"""

from __future__ import annotations

import collections
import html
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from ..models import available
from .cleanup import remove_at_exit
from .config import AppConfig
from .controls import (
    DIRECTIONS,
    MAX_AXES,
    MODES,
    alpha_label,
    axes_setting,
    axis_label,
    axis_ticks,
    build_alpha,
    end_labels,
    paint_mask,
)
from .engine import (
    AutoUnavailable,
    ModelCache,
    auto_alpha,
    auto_setting,
    model_axes,
    model_summary,
    run_model,
    save_result,
    to_display,
)
from .uploads import UploadLimits, UploadRejected, check_layer, load_upload

__all__ = ["CSS", "bound_editor", "build_app"]

#: Page styles: the level names under the slider's two ends (or under each anchor of an axis slider).
CSS = """
.ftn-ends { display: flex; justify-content: space-between; font-weight: 600; margin-top: -0.4em; }
"""

_EDITOR_LABEL = "Paint the area to change (mode: painted area)"
_GRADIENT_LABELS = ("Gradient start alpha", "Gradient end alpha")

_MODE_HELP = (
    "**whole image**: the slider's alpha everywhere. "
    "**painted area**: pixels painted with the brush get the slider's alpha, unpainted pixels get alpha 0 "
    "(the left end). **gradient**: alpha ramps from the start to the end value across the image. "
    "With several axes, each has its own slider and paint editor: a painted axis changes where painted, an "
    "unpainted one everywhere at its slider; the gradient runs on the chosen axis (start and end as shares of its range)."
)


_KEEP_RESULTS = 50  # result files kept on disk; older ones are deleted as new ones arrive
_MAX_LAYERS = 4  # paint layers a request may carry (the page sends one)


def bound_editor(editor: gr.ImageEditor, limits: UploadLimits, max_layers: int = _MAX_LAYERS) -> gr.ImageEditor:
    """Make ``editor`` refuse, before decoding, what a request sends beyond the upload limits.

    Gradio decodes every image of an editor's value (background, each paint layer, composite) at
    full size before a handler sees it; a crafted request could send a 13000 x 13000 layer of a few
    hundred KB. Here each image's size is read from its header first (:func:`check_layer`) and a
    request with more than ``max_layers`` layers is refused, each as a one-line message.
    """
    convert = editor.convert_and_format_image
    preprocess = editor.preprocess

    def checked_convert(file: Any, *args: Any, **kwargs: Any) -> Any:
        if file is not None:
            try:
                check_layer(file if isinstance(file, (bytes, bytearray, memoryview)) else file.path, limits)
            except UploadRejected as err:
                raise _refused(str(err)) from None
        return convert(file, *args, **kwargs)

    def checked_preprocess(payload: Any) -> Any:
        if payload is not None:
            cached = editor.blob_storage.get(payload.id) if getattr(payload, "id", None) is not None else None
            layers = (cached.layers if cached is not None else getattr(payload, "layers", None)) or []
            if len(layers) > max_layers:
                raise _refused(f"{len(layers)} paint layers sent; this app takes at most {max_layers}")
        return preprocess(payload)

    editor.convert_and_format_image = checked_convert  # type: ignore[method-assign]
    editor.preprocess = checked_preprocess  # type: ignore[method-assign]
    return editor


def _refused(message: str) -> gr.Error:
    """A pop-up for a refused request; the user's mistake, so no traceback in the server's log."""
    return gr.Error(message, print_exception=False)


def _ends_html(metadata: dict) -> str:
    left, right = end_labels(metadata)
    return f'<div class="ftn-ends"><span>&#9664; {html.escape(left)}</span><span>{html.escape(right)} &#9654;</span></div>'


def _ticks_html(ticks: list[str]) -> str:
    """An axis's anchors under its slider: spread evenly, as the whole-number stops they name are."""
    spans = "".join(f"<span>{html.escape(t)}</span>" for t in ticks)
    return f'<div class="ftn-ends">{spans}</div>'


def build_app(config: AppConfig) -> gr.Blocks:
    """The app's page with every control wired to its handler (not yet served)."""
    shipped = list(available())
    default = config.default_model if config.default_model in shipped else (shipped[0] if shipped else None)
    results = Path(tempfile.mkdtemp(prefix="ftn-app-"))  # Gradio serves files under the temp folder
    remove_at_exit(results)  # at exit and on SIGTERM
    # Uploads and results are files a visitor put on the server: never models.
    models = ModelCache(max_models=config.max_models, allow_paths=config.allow_local_models,
                        refuse_under=[results, get_upload_folder(), Path(tempfile.gettempdir()) / "gradio"])
    recent: collections.deque[Path] = collections.deque()  # results on disk, oldest first
    counter = itertools.count(1)

    def keep(path: Path) -> None:
        """Remember a new result and delete the oldest beyond _KEEP_RESULTS (Gradio serves its own copy)."""
        recent.append(path)
        while len(recent) > _KEEP_RESULTS:
            recent.popleft().unlink(missing_ok=True)

    def chosen(name: str | None, local: str | None) -> str:
        """The local box wins when it is offered and filled; a request naming a path while the box
        is off gets the shipped model it also names (the cache refuses paths anyway)."""
        return ((local or "").strip() if config.allow_local_models else "") or (name or "")

    def model_for(name: str | None, local: str | None) -> Any:
        choice = chosen(name, local)
        if not choice:
            raise _refused("choose a shipped model or give a local .safetensors file")
        try:
            return models.get(choice)
        except (FileNotFoundError, ValueError) as err:
            raise _refused(str(err)) from None

    def loaded(path: str | None) -> Any:
        if not path:
            raise _refused("upload an image first")
        try:
            return load_upload(path, config.limits)
        except (UploadRejected, FileNotFoundError) as err:
            raise _refused(str(err)) from None

    # -- handlers --------------------------------------------------------------------------------

    def axes_of(model: Any) -> list[tuple[str, int]] | None:
        axes = model_axes(model)
        if axes is not None and len(axes) > MAX_AXES:
            raise _refused(f"this model has {len(axes)} axes; the app shows at most {MAX_AXES} (use ftn run)")
        return axes

    def background(path: str | None) -> dict | None:
        """A fresh editor value (the image, nothing painted), or None without a usable upload."""
        try:
            shown = to_display(load_upload(path, config.limits).image) if path else None
        except (UploadRejected, FileNotFoundError):
            shown = None
        return None if shown is None else {"background": shown, "layers": [], "composite": shown}

    def on_model(name: str | None, local: str | None, path: str | None, *values: float) -> list[Any]:
        model = model_for(name, local)
        meta = model.metadata
        axes = axes_of(model)
        hidden = gr.update(visible=False)
        if axes is None:  # one axis, two levels: the page as it always was
            left, right = end_labels(meta)
            sliders = [gr.update(minimum=0.0, maximum=1.0, value=min(max(values[0], 0.0), 1.0),
                                 label=f"alpha: 0 = {left} ... 1 = {right}", visible=True)] + [hidden] * (MAX_AXES - 1)
            ticks = [_ends_html(meta)] + [gr.update(value="", visible=False)] * (MAX_AXES - 1)
            editors = [gr.update(label=_EDITOR_LABEL)] + [gr.update(visible=False, value=None)] * (MAX_AXES - 1)
            level = alpha_label(meta, min(max(values[0], 0.0), 1.0))
            gradient = [gr.update(visible=False), *(gr.update(label=label) for label in _GRADIENT_LABELS)]
        else:
            levels = model.levels
            fresh = background(path)
            sliders, ticks, editors = [], [], []
            for d in range(MAX_AXES):
                if d >= len(axes):
                    sliders.append(hidden)
                    ticks.append(gr.update(value="", visible=False))
                    editors.append(gr.update(visible=False, value=None))
                    continue
                axis_name, k = axes[d]
                axis = levels.axis(axis_name) if levels is not None else None
                label = axis_label(axis_name, axis, k)
                sliders.append(gr.update(minimum=0.0, maximum=float(k), value=min(max(values[d], 0.0), float(k)),
                                         label=label, visible=True))
                ticks.append(gr.update(value=_ticks_html(axis_ticks(axis, k)), visible=True))
                # Editor 0 keeps its paint, as on the one-axis page; the others start afresh for the new axes.
                paint = f"Paint where {axis_name} changes (painted area)"  # short: the slider names the anchors
                # Without a usable upload there is no picture to show, and on_upload cleared the paint.
                shown = {"visible": True} if fresh is None else {"visible": True, "value": fresh}
                editors.append(gr.update(label=paint) if d == 0 else gr.update(label=paint, **shown))
            level = levels_line(model, values)
            names = [axis_name for axis_name, _ in axes]
            gradient = [gr.update(choices=names, value=names[0], visible=True),
                        *(gr.update(label=label.replace(" alpha", " (share of the axis)")) for label in _GRADIENT_LABELS)]
        return [*sliders, *ticks, *editors, *gradient, level, model_summary(model), ""]  # "" clears a stale auto note

    def levels_line(model: Any, values: tuple[float, ...] | list[float]) -> str:
        axes = model_axes(model)
        if axes is None:
            return alpha_label(model.metadata, values[0])
        try:
            return axes_setting(axes, model.levels, values[: len(axes)], "whole image", (1, 1))[1]
        except ValueError:  # a slider between updates, outside its new range: said when it runs
            return ", ".join(f"{n} alpha {v:.2f}" for (n, _), v in zip(axes, values, strict=False))

    def on_alpha(name: str | None, local: str | None, *values: float) -> str:
        try:
            return levels_line(models.get(chosen(name, local)), values)
        except (FileNotFoundError, ValueError):
            return f"alpha {values[0]:.2f}"

    def on_upload(path: str | None, name: str | None, local: str | None) -> list[Any]:
        if not path:  # cleared
            return [gr.update(), *([None] * MAX_AXES), None, None, "", ""]
        try:
            image = load_upload(path, config.limits)
        except (UploadRejected, FileNotFoundError) as err:
            gr.Warning(str(err))
            return [None, *([None] * MAX_AXES), None, None, f"**Refused:** {html.escape(str(err))}", ""]
        shown = to_display(image.image)
        height, width = image.image.shape[-2:]
        try:  # an editor per axis of the model chosen now (a model chosen later fills its own)
            axes = model_axes(models.get(chosen(name, local)))
        except (FileNotFoundError, ValueError):
            axes = None
        count = 1 if axes is None else min(len(axes), MAX_AXES)
        editors = [{"background": shown, "layers": [], "composite": shown} if d < count else None for d in range(MAX_AXES)]
        ready = f"{Path(path).name}: {width} x {height} pixels. Move the slider to run."
        return [gr.update(), *editors, None, None, ready, ""]

    def on_run(
        path: str | None, name: str | None, local: str | None, mode: str, direction: str, start: float, end: float,
        gradient_axis: str | None, progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio finds its progress tracker by this default)
        *controls: Any,  # the sliders, then the editors; Gradio inserts progress by position, before them
    ) -> tuple[Any, str, str]:
        values, editors = list(controls[:MAX_AXES]), list(controls[MAX_AXES:])
        progress(0.0, desc="loading")
        image = loaded(path)
        model = model_for(name, local)
        axes = axes_of(model)
        x = image.image
        meta = model.metadata
        try:
            if axes is None:
                alpha, editor = values[0], editors[0]
                control = build_alpha(mode, x.shape[-2:], alpha, layers=(editor or {}).get("layers"),
                                      direction=direction, start=start, end=end)
                if isinstance(control, float):
                    where = alpha_label(meta, control)
                elif mode == "painted area":
                    share = float(paint_mask(editor["layers"], x.shape[-2:]).mean()) * 100
                    where = f"{alpha_label(meta, alpha)} on the painted {share:.1f}% of the pixels, alpha 0 elsewhere"
                else:
                    where = f"gradient {direction}, alpha {start:.2f} ... {end:.2f}"
            else:
                layers = [(e or {}).get("layers") for e in editors]
                control, where = axes_setting(axes, model.levels, values[: len(axes)], mode, x.shape[-2:], layers=layers,
                                              gradient_axis=gradient_axis, direction=direction, start=start, end=end)
        except ValueError as err:
            raise _refused(str(err)) from None
        begin = time.perf_counter()
        try:
            out = run_model(model, x, control, progress=lambda f, what: progress(f, desc=what))
        except ValueError as err:
            raise _refused(str(err)) from None
        seconds = time.perf_counter() - begin
        stem = f"{Path(path).stem}-{Path(chosen(name, local) or 'model').stem}-{next(counter)}"
        saved = save_result(out, results, stem, alpha=image.alpha)
        keep(saved)
        before = to_display(x, size=tuple(out.shape[-2:]))
        return (before, to_display(out)), str(saved), f"Done: {where}, {seconds:.2f} s."

    def on_auto(path: str | None, name: str | None, local: str | None) -> list[Any]:
        image = loaded(path)
        model = model_for(name, local)
        axes = axes_of(model)
        try:
            if axes is None:
                alpha, line = auto_alpha(model.metadata, image.image, path)
                return [round(alpha, 2), *([gr.update()] * (MAX_AXES - 1)), f"Auto: {line}."]  # the slider's step
            setting, line = auto_setting(model, image.image, path)
        except AutoUnavailable as err:
            raise _refused(str(err)) from None
        names = [axis_name for axis_name, _ in axes]
        sliders = [round(setting[names[d]], 2) if d < len(names) and names[d] in setting else gr.update()  # the slider's step
                   for d in range(MAX_AXES)]
        return [*sliders, f"Auto: {line}."]

    # -- page ------------------------------------------------------------------------------------

    # delete_cache: Gradio's copies of uploads and results older than an hour go, checked hourly.
    with gr.Blocks(title="ftn: continuous-level image processing", delete_cache=(3600, 3600)) as app:
        gr.Markdown(
            "## ftn: one model, every level in between\n"
            "Upload an image, pick a model, and slide between its trained levels "
            "(for the whole image, a painted area, or a gradient; a model with several axes has a slider "
            "and a paint layer per axis). Runs on the CPU of this machine."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                upload = gr.Image(label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                  height=240, elem_id="ftn-upload")
                model = gr.Dropdown(shipped, value=default, label="Model", elem_id="ftn-model")
                if config.allow_local_models:  # ftn app --allow-local-models: a path on this server
                    local = gr.Textbox(label="...or a model file on this server (press Enter)",
                                       placeholder="/path/to/model.safetensors", elem_id="ftn-local")
                else:
                    local = gr.State("")
                summary = gr.Markdown(elem_id="ftn-summary")
                # Slider d sets axis d; a one-axis model shows the first only (ftn-alpha, as it always was).
                sliders, ticks = [], []
                for d in range(MAX_AXES):
                    sliders.append(gr.Slider(0.0, 1.0, value=0.5 if d == 0 else 0.0, step=0.01, label="alpha",
                                             visible=d == 0, elem_id="ftn-alpha" if d == 0 else f"ftn-alpha-{d + 1}"))
                    ticks.append(gr.HTML(visible=d == 0, elem_id=None if d == 0 else f"ftn-ticks-{d + 1}"))
                level_now = gr.Markdown(elem_id="ftn-level")
                with gr.Row():
                    run = gr.Button("Run", variant="primary", elem_id="ftn-run")
                    auto = gr.Button("Auto level", elem_id="ftn-auto")
                auto_note = gr.Markdown(elem_id="ftn-auto-note")
                gr.Markdown("Letting go of a slider runs the model. **Auto level** estimates the image's noise "
                            "sigma (denoise) or reads its JPEG quality (dejpeg) and sets the slider (the sigma and "
                            "quality sliders of a model with several axes).")
            with gr.Column(scale=1, min_width=300):
                # Editor d paints axis d (the first only, for a one-axis model): one paint layer per axis.
                editors = [bound_editor(gr.ImageEditor(
                    label=_EDITOR_LABEL, type="numpy", image_mode="RGBA",
                    format="png",  # lossless, so the brush's edge is exactly what comes back
                    sources=(), transforms=(), layers=False, interactive=True, visible=d == 0,
                    elem_id="ftn-editor" if d == 0 else f"ftn-editor-{d + 1}",
                    brush=gr.Brush(colors=["#ff2d55"], color_mode="fixed"), eraser=gr.Eraser(),
                ), config.limits, max_layers=_MAX_LAYERS if d == 0 else 1) for d in range(MAX_AXES)]  # the page sends one
                mode = gr.Radio(list(MODES), value=MODES[0], label="Where alpha applies", elem_id="ftn-mode")
                gr.Markdown(_MODE_HELP)
                with gr.Row():
                    gradient_axis = gr.Dropdown([], label="Gradient axis", visible=False, elem_id="ftn-gradient-axis")
                    direction = gr.Dropdown(list(DIRECTIONS), value=DIRECTIONS[0], label="Gradient direction")
                    start = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label=_GRADIENT_LABELS[0])
                    end = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label=_GRADIENT_LABELS[1])
            with gr.Column(scale=1, min_width=300):
                compare = gr.ImageSlider(label="Before / after", type="numpy", format="png", interactive=False,
                                         elem_id="ftn-compare")
                download = gr.File(label="Result (PNG)", interactive=False, elem_id="ftn-download")
                status = gr.Markdown(elem_id="ftn-status")

        run_inputs = [upload, model, local, mode, direction, start, end, gradient_axis, *sliders, *editors]
        run_outputs = [compare, download, status]
        model_io = dict(inputs=[model, local, upload, *sliders],
                        outputs=[*sliders, *ticks, *editors, gradient_axis, start, end, level_now, summary, auto_note])

        # One event for every way a model is chosen (the page's load, the list, the local box), so that
        # the browser runs them one at a time. Gradio's page applies an event's updates property by
        # property, with pauses: as separate events, the load's updates and those of a model chosen at
        # once interleaved, and the load's hid the second editor again (the browser test, on a busy
        # machine). "always_last": a choice made during a run waits, then runs with the page's values.
        model_triggers = [app.load, model.change, *([local.submit] if config.allow_local_models else [])]
        gr.on(model_triggers, on_model, **model_io, trigger_mode="always_last")
        for slider in sliders:
            slider.change(on_alpha, [model, local, *sliders], level_now, queue=False, show_progress="hidden")
        upload.change(on_upload, [upload, model, local], [upload, *editors, compare, download, status, auto_note])
        for slider in (*sliders, start, end):  # letting go of a slider runs the model
            slider.release(on_run, run_inputs, run_outputs)
        run.click(on_run, run_inputs, run_outputs)
        auto.click(on_auto, [upload, model, local], [*sliders, auto_note]).success(on_run, run_inputs, run_outputs)
    return app
