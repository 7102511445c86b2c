"""The restoration report of a reproduce study (sections 1-8 of ``docs/results.md``): the paper's tables
and figures with our numbers beside the paper's, built from the cached evaluations
(:mod:`benchmarks.reproduce.evaluation`) by :func:`build_report`."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import ftn
from benchmarks.reproduce.evaluation import EvalData, complexity, evaluate_run, filters_run, model_info, smooth_run
from benchmarks.reproduce.figures import centre_crop, hstack
from benchmarks.reproduce.figures import plt as _plt
from benchmarks.reproduce.paper import load_paper
from benchmarks.reproduce.recipe import Recipe, Run, load_recipe, rel
from benchmarks.reproduce.training import duration
from ftn.eval.analysis import largest_drift, largest_step, linear_alpha
from ftn.eval.metrics import to_uint8
from ftn.tasks import get_task

PAPER: dict[str, Any] = load_paper()

#: report row label -> run name
TABLE2_ROWS = [("DNI", "dni"), ("AdaFM", "adafm"), ("CFSNet", "cfsnet"), ("FTN-gc16", "ftn-gc16"),
               ("FTN-gc4", "ftn-gc4"), ("FTN", "ftn")]
TABLE1_ROWS = [("FTN", "ftn-to50"), ("FTN-deeper", "ftn-deeper-to50"), ("FTN-spatial", "ftn-spatial-to50")]
TABLE3_ROWS = [("FTN (G=16)", "ftn-gc16"), ("FTN", "ftn"), ("Fine-tuning (DNI)", "dni")]
FIG5_ROWS = [("FTN (G=1)", "ftn", 1), ("FTN-gc4", "ftn-gc4", 4), ("FTN-gc16", "ftn-gc16", 16), ("AdaFM", "adafm", None)]
TASK_TITLES = {"denoise": "Gaussian denoising", "dejpeg": "JPEG artefact removal"}


def crops_figure(recipe: Recipe, strips: dict[str, Path], data: EvalData, path: Path) -> None:
    """Rows: clean | degraded | one strip per method at the strip alphas, with labels (Pillow only)."""
    from PIL import Image, ImageDraw

    cfg = recipe.smooth
    _, degraded, clean = data.items(cfg["task"], cfg["level"], limit=int(cfg["images"]))[0]
    size = int(cfg["strip_crop"])
    head = hstack([to_uint8(centre_crop(clean, size)).astype(np.uint8), to_uint8(centre_crop(degraded.clamp(0, 1), size)).astype(np.uint8)])
    rows = [("clean | input", head)] + [(label, np.asarray(Image.open(p).convert("RGB"))) for label, p in strips.items()]
    label_w, pad = 110, 4
    alphas = ", ".join(f"{a:g}" for a in cfg["strip_alphas"])
    title = f"{TASK_TITLES.get(cfg['task'], cfg['task'])}, input level {cfg['level']:g}; alpha = {alphas}"
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(label_w + max(r.shape[1] for _, r in rows), int(probe.textlength(title)) + 8)
    height = sum(r.shape[0] + pad for _, r in rows) + 16
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), title, fill="black")
    y = 16
    for label, row in rows:
        canvas.paste(Image.fromarray(row), (label_w, y))
        draw.text((4, y + row.shape[0] // 2 - 5), label, fill="black")
        y += row.shape[0] + pad
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)



# -- the report -----------------------------------------------------------------------------------


def f2(v: float | None, nd: int = 2) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _mark(level: float, seen: Sequence[float]) -> str:
    return f"{level:g}" if level in seen else f"{level:g}*"


class Report:
    """The sections of one study's report, from its cached evaluations (per run key) and model infos
    (:func:`~benchmarks.reproduce.evaluation.model_info`); each section method returns markdown and
    adds its agreements and differences with the paper to ``findings``."""

    def __init__(self, recipe: Recipe, evals: dict[str, dict], smooths: dict[str, dict], filters: dict[str, dict],
                 comp: dict[str, Any] | None, out: Path, infos: dict[str, dict] | None = None) -> None:
        self.recipe, self.evals, self.smooths, self.filters, self.comp, self.out = recipe, evals, smooths, filters, comp, out
        self.infos = infos or {}
        self.findings: list[str] = []
        self.plots: list[str] = []

    # helpers
    def ev(self, task: str, run: str) -> dict | None:
        return self.evals.get(f"{task}/{run}")

    def level(self, task: str, run: str, level: float) -> dict | None:
        e = self.ev(task, run)
        return None if e is None else e["levels"].get(f"{level:g}")

    def best(self, task: str, run: str, level: float) -> float | None:
        entry = self.level(task, run, level)
        return None if entry is None else entry["best_psnr"]

    def scratch(self, task: str, level: float) -> float | None:
        l1 = self.recipe.tasks[task]["levels"][0]
        return self.best(task, "base" if level == l1 else f"scratch-{level:g}", level)

    # sections
    def header(self) -> str:
        r = self.recipe
        ev = r.eval
        crop = f"centre-cropped to at most {ev['crop']} x {ev['crop']}" if ev.get("crop") else "full size"
        tasks = "; ".join(
            f"{t}: first {ev['limit']} images of `{Path(s['test_data']).name}`" for t, s in r.tasks.items()
        )
        return "\n".join([
            f"# Reproducing the paper's evidence — recipe `{r.name}`",
            "",
            f"Every number below is produced by `python -m benchmarks.reproduce --recipe {rel(r.path)}` "
            f"(runs and cached evaluations under `{r.runs_dir}`); the paper's numbers, typed from "
            "`../shared/paper/ftn-paper.txt`, stand beside ours with the table they come from.",
            "",
            f"**Protocol.** PSNR (dB) on RGB, 8-bit rounding, no border crop (BasicSR conventions); test images: {tasks}, "
            f"{crop}, degraded with a fixed seed. Best alpha: grid search over alpha = 0, 1/{ev['alpha_steps']}, ..., 1"
            f"{' refined by the two midpoints around the grid maximum' if ev['refine'] else ''}, on the test images "
            "themselves, as the paper does. Linear alpha: (level - level 1) / (level 2 - level 1). Seen levels are "
            "measured at their own end (alpha 0 for level 1, alpha 1 for level 2). `*` marks levels no network was "
            "trained for.",
            "",
            "**Scale.** The paper trains full-size networks on DIV2K and tests on all of CBSD68 / LIVE1. This recipe's "
            "network, training data, iterations and test subset are in the Budget section; where they are smaller than "
            "the paper's, absolute PSNRs differ from the paper's: compare the *orderings* and *gaps* between methods.",
        ])

    def budget(self) -> str:
        lines = ["## Budget", ""]
        runs = self.recipe.runs
        rows, total, machines = [], 0.0, {}
        base_params = None
        for run in runs:
            info = self.infos.get(run.key)
            if info is None:
                rows.append([run.key, run.stage, _method_label(run), _levels_label(run), str(run.config.iterations),
                             "not trained yet", "—", "—"])
                continue
            training = info["training"]
            wall = float(training.get("wall_time_s") or 0.0)
            total += wall
            machine = training.get("machine") or {}
            mkey = f"{machine.get('cpu', '?')}, {machine.get('threads', '?')} thread(s), torch {machine.get('torch', '?')}, {machine.get('device', '?')}"
            machines[mkey] = machines.get(mkey, 0) + 1
            params = info["parameters"]["base"], info["parameters"]["trained"]
            if run.name == "base" and base_params is None:
                base_params = params[0]
            rows.append([run.key, run.stage, _method_label(run), _levels_label(run), str(training.get("iterations", "?")),
                         duration(wall), f"{params[1]:,}", mkey])
        cfg = runs[0].config
        arch = f"`{cfg.arch}` {json.dumps(cfg.arch_options)}"
        lines.append(
            f"Network: {arch}" + (f", {base_params:,} parameters" if base_params else "")
            + f". Training: patches {cfg.patch_size} px, batch {cfg.batch_size}, Adam lr {cfg.lr:g} ({cfg.scheduler}), "
            f"L1 loss, data `{cfg.train_data}`. Stage 2 trains only the tuner at alpha = 1 on level 2, from the shared "
            f"stage-1 base of its task. Total training wall time {duration(total)} over {sum(1 for r in runs if r.key in self.infos)} "
            f"of {len(runs)} runs (each run's own `training` metadata)."
        )
        eval_s = sum(float(e.get("wall_s") or 0) for e in [*self.evals.values(), *self.smooths.values()])
        eval_s += float((self.comp or {}).get("wall_s") or 0)
        lines[-1] += (f" Evaluation (done once, then cached): {duration(eval_s)}, on the machine that ran it; "
                      "the report itself is rebuilt from the caches in seconds.")
        lines += ["", "Machine(s): " + "; ".join(f"{k} ({v} runs)" for k, v in machines.items()) if machines else "Machine(s): —", ""]
        lines.append(table(["run", "stage", "method", "levels", "iterations", "wall time", "parameters trained", "machine"], rows))
        missing = [r.key for r in runs if r.key not in self.infos]
        if missing:
            lines += ["", f"**Incomplete study**: {len(missing)} run(s) not trained yet ({', '.join(missing)}); their cells are `—`."]
        return "\n".join(lines)

    def table2(self) -> str:
        out = ["## 1. Table 2 — adaptation and interpolation", ""]
        for task, spec in self.recipe.tasks.items():
            l1, l2 = spec["levels"]
            unseen = spec["unseen"]
            name = TASK_TITLES.get(task, task)
            level_name = get_task(task).level_name
            out.append(f"### {name}, {level_name} {l1:g} -> {l2:g} (`{Path(spec['test_data']).name}`)")
            out.append("")
            paper = PAPER["table2"]["AdaFM-Net (16 blocks)"] if task == "denoise" else None
            paper_levels = PAPER["table2"]["levels"]
            header = ["method", _mark(l1, [l1, l2])]
            for u in unseen:
                header += [f"{u:g}* best (alpha)", f"{u:g}* at linear alpha"]
            header.append(_mark(l2, [l1, l2]))
            if paper:
                header += [f"paper {_mark(v, [l1, l2])}" for v in paper_levels]
            rows = []

            def inp(level: float, task: str = task) -> str:
                e = self.level(task, "base", level)
                return f2(e["input_psnr"]) if e else "—"

            input_row = ["degraded input", inp(l1)]
            for u in unseen:
                input_row += [inp(u), ""]
            input_row.append(inp(l2))
            if paper:
                input_row += ["—"] * len(paper_levels)
            rows.append(input_row)
            base_row = ["level-1 network, no tuning", f2(self.best(task, "base", l1))]
            for u in unseen:
                base_row += [f2(self.best(task, "base", u)), ""]
            base_row.append(f2(self.best(task, "base", l2)))
            if paper:
                base_row += ["—"] * len(paper_levels)
            rows.append(base_row)
            scratch = ["From scratch (one network per level)", f2(self.scratch(task, l1))]
            for u in unseen:
                scratch += [f2(self.scratch(task, u)), "—"]
            scratch.append(f2(self.scratch(task, l2)))
            if paper:
                scratch += [f2(v) for v in paper["From scratch"]]
            rows.append(scratch)
            for label, run in TABLE2_ROWS:
                row = [label, f2(self.best(task, run, l1))]
                for u in unseen:
                    e = self.level(task, run, u)
                    row += [f"{f2(e['best_psnr'])} ({e['best_alpha']:.3f})" if e else "—",
                            f"{f2(e['linear_psnr'])} ({e['linear_alpha']:.3f})" if e else "—"]
                row.append(f2(self.best(task, run, l2)))
                if paper:
                    row += [f2(v) for v in paper[label]]
                rows.append(row)
            out.append(table(header, rows))
            out.append("")
            if paper:
                out.append(f"Paper: {PAPER['table2']['source']}, AdaFM-Net columns. "
                           "The paper's CFSNet-10 columns, for reference: "
                           + "; ".join(f"{k} {' / '.join(f2(v) for v in vals)}" for k, vals in PAPER["table2"]["CFSNet-10 (10 blocks)"].items())
                           + ".")
            else:
                out.append(f"Paper: {PAPER['table2']['dejpeg']}.")
            checks = []
            base1 = self.best(task, "base", l1)
            for _label, run in TABLE2_ROWS:
                e = self.ev(task, run)
                if e is not None and base1 is not None:
                    checks.append(abs(e["alpha0_level1_psnr"] - base1))
            if checks:
                out.append(f"Check: at alpha 0 every tuned model reproduces the stage-1 base "
                           f"(largest PSNR difference at {level_name} {l1:g}: {max(checks):.4f} dB).")
            out.append("")
            self._order_finding(task, unseen, paper, paper_levels if paper else None)
        return "\n".join(out)

    def _order_finding(self, task: str, unseen: list[float], paper: dict | None, paper_levels: list | None) -> None:
        for u in unseen:
            ours = {label: self.best(task, run, u) for label, run in TABLE2_ROWS}
            if any(v is None for v in ours.values()):
                continue
            order = sorted(ours, key=lambda k: -ours[k])  # type: ignore[operator]
            text = f"Table 2, {task} level {u:g}*: our order (best alpha) {' > '.join(order)}"
            if paper and paper_levels and u in paper_levels:
                j = paper_levels.index(u)
                porder = sorted(ours, key=lambda k: -paper[k][j])
                verdict = "same as the paper" if porder == order else "differs from the paper's"
                text += f"; paper {' > '.join(porder)} ({verdict}; best: ours {order[0]}, paper {porder[0]})"
            self.findings.append(text + ".")

    def table1(self) -> str:
        out = ["## 2. Table 1 — FTN structures (ablation)", ""]
        task = "denoise"
        if task not in self.recipe.tasks:
            return "\n".join(out + ["No denoising task in this recipe."])
        levels = PAPER["table1"]["levels"]
        runs = [self.recipe.run(task, run) for _, run in TABLE1_ROWS]
        trained = next((r for r in runs if r is not None), None)
        l1, l2 = trained.levels if trained else (levels[0], levels[-1])  # type: ignore[misc]
        header = ["structure"] + [_mark(v, [l1, l2]) + ("" if v in (l1, l2) else " best (alpha)") for v in levels] + \
                 [f"{_mark(v, [l1, l2])} linear" for v in levels if v not in (l1, l2)] + \
                 [f"paper {_mark(v, [20, 50])}" for v in levels]
        rows = []
        ours_order = {}
        for label, run in TABLE1_ROWS:
            row = [label]
            for v in levels:
                e = self.level(task, run, v)
                row.append(f"{f2(e['best_psnr'])} ({e['best_alpha']:.3f})" if e and not e.get("seen") else (f2(e["best_psnr"]) if e else "—"))
            for v in levels:
                if v in (l1, l2):
                    continue
                e = self.level(task, run, v)
                row.append(f2(e["linear_psnr"]) if e else "—")
            row += [f2(x) for x in PAPER["table1"]["rows"][label]]
            rows.append(row)
            vals = [self.level(task, run, v) for v in levels if v not in (l1, l2)]
            if all(vals):
                ours_order[label] = float(np.mean([e["best_psnr"] for e in vals]))  # type: ignore[index]
        out.append(table(header, rows))
        out += ["", f"Ours: sigma {l1:g} -> {l2:g} from the shared sigma-{l1:g} base. Paper: {PAPER['table1']['source']}."]
        if len(ours_order) == 3:
            order = sorted(ours_order, key=lambda k: -ours_order[k])
            p = PAPER["table1"]["rows"]
            porder = sorted(p, key=lambda k: -(p[k][1] + p[k][2]))
            self.findings.append(
                f"Table 1 (mean over the unseen levels): our order {' > '.join(order)}; paper {' > '.join(porder)} "
                f"({'same' if order == porder else 'differs'})."
            )
        return "\n".join(out)

    def table3(self) -> str:
        out = ["## 3. Table 3 — filter analysis (level-1 vs level-2 kernels)", ""]
        header = ["task", "method", "kernel MAE", "filter-wise cosine", "layers", "filters", "paper MAE", "paper cosine"]
        rows = []
        for task in self.recipe.tasks:
            ours = {}
            for label, run in TABLE3_ROWS:
                f = self.filters.get(f"{task}/{run}")
                p = PAPER["table3"]["rows"][label]
                rows.append([task, label, f2(f["mae"], 4) if f else "—", f2(f["cosine"], 4) if f else "—",
                             str(f["layers"]) if f else "—", str(f["filters"]) if f else "—", f2(p[0], 4), f2(p[1], 4)])
                if f:
                    ours[label] = f
            if len(ours) == 3:
                mae_order = sorted(ours, key=lambda k: ours[k]["mae"])
                cos_order = sorted(ours, key=lambda k: -ours[k]["cosine"])
                paper_order = [label for label, _ in TABLE3_ROWS]
                self.findings.append(
                    f"Table 3, {task}: smallest kernel change first, by MAE {' < '.join(mae_order)}, by cosine "
                    f"{' > '.join(cos_order)}; paper {' < '.join(paper_order)} "
                    f"({'same' if mae_order == paper_order and cos_order == paper_order else 'differs'})."
                )
        out.append(table(header, rows))
        out += ["",
                "Kernels of every tuned conv: level 1 from `model.export(0)`, level 2 from `model.export(1)` (FTN(f) for "
                "FTN, the fine-tuned copy for DNI). MAE: mean |f2 - f1| over all kernel entries of all layers; cosine: "
                "between each output filter f1[o] and f2[o], averaged over all filters of all layers "
                "(`ftn.eval.analysis`).",
                f"Paper: {PAPER['table3']['source']}. **Setting differs**: the paper measured PD-controllable "
                "super-resolution on CFSNet-30; we measure our denoising and deJPEG runs on the network above."]
        return "\n".join(out)

    def fig5(self) -> str:
        out = ["## 4. Figure 5 analogue — groups: interpolation against adaptation", ""]
        header = ["task", "method", "groups", "adaptation: level 2 at alpha 1", "interpolation: mean over unseen, best alpha",
                  "interpolation: at linear alpha", "paper"]
        rows, points = [], {}
        for task, spec in self.recipe.tasks.items():
            l2 = spec["levels"][1]
            for label, run, groups in FIG5_ROWS:
                adapt = self.best(task, run, l2)
                ent = [self.level(task, run, u) for u in spec["unseen"]]
                interp = float(np.mean([e["best_psnr"] for e in ent])) if ent and all(ent) else None  # type: ignore[index]
                lin = float(np.mean([e["linear_psnr"] for e in ent])) if ent and all(ent) else None  # type: ignore[index]
                rows.append([task, label, str(groups) if groups else "— (linear)", f2(adapt), f2(interp), f2(lin),
                             "figure only" if label != "AdaFM" else "figure only"])
                if adapt is not None and interp is not None:
                    points.setdefault(task, []).append((label, adapt, interp))
            pts = {label: (a, i) for label, a, i in points.get(task, [])}
            g = [pts.get(k) for k in ("FTN (G=1)", "FTN-gc4", "FTN-gc16")]
            if all(g):
                inter_up = g[0][1] <= g[1][1] <= g[2][1]  # type: ignore[index]
                adapt_down = g[0][0] >= g[1][0] >= g[2][0]  # type: ignore[index]
                self.findings.append(
                    f"Figure 5, {task}: more groups -> better interpolation: {'yes' if inter_up else 'no'} "
                    f"({', '.join(f'{x[1]:.2f}' for x in g)} dB for G = 1, 4, 16); -> worse adaptation: "  # type: ignore[index]
                    f"{'yes' if adapt_down else 'no'} ({', '.join(f'{x[0]:.2f}' for x in g)} dB); the paper says yes to both."  # type: ignore[index]
                )
        out.append(table(header, rows))
        out += ["", f"Paper: {PAPER['fig5']}"]
        if points:
            name = "reproduce-fig5-groups.png"
            self._plot_fig5(points, self.out / name)
            out += ["", f"![interpolation against adaptation]({name})"]
        return "\n".join(out)

    def _plot_fig5(self, points: dict[str, list], path: Path) -> None:
        plt = _plt()
        fig, axes = plt.subplots(1, len(points), figsize=(5.2 * len(points), 4.2), squeeze=False)
        for ax, (task, pts) in zip(axes[0], points.items()):
            groups = [(a, i) for label, a, i in pts if label != "AdaFM"]
            if len(groups) > 1:
                ax.plot([g[0] for g in groups], [g[1] for g in groups], color="grey", lw=0.8, zorder=0)
            for label, a, i in pts:
                ax.scatter([a], [i], s=40, marker="s" if label == "AdaFM" else "o")
                ax.annotate(label, (a, i), textcoords="offset points", xytext=(5, 4), fontsize=8)
            spec = self.recipe.tasks[task]
            ax.set_xlabel(f"adaptation: PSNR at level 2 ({spec['levels'][1]:g}), dB")
            ax.set_ylabel("interpolation: mean PSNR over " + ", ".join(f"{u:g}*" for u in spec["unseen"]) + ", dB")
            ax.set_title(f"{TASK_TITLES.get(task, task)}")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.plots.append(path.name)

    def fig6(self) -> str:
        out = ["## 5. Figure 6 analogue — interpretability (PSNR against alpha)", ""]
        for task, spec in self.recipe.tasks.items():
            l1, l2 = spec["levels"]
            unseen = spec["unseen"]
            header = ["method"] + [f"{u:g}*: best alpha (linear {linear_alpha(u, l1, l2):.3f})" for u in unseen] + \
                     [f"{u:g}*: abs(best - linear)" for u in unseen] + ["mean abs(best - linear)", "paper"]
            rows, dist = [], {}
            curves = {}
            for label, run in TABLE2_ROWS:
                ents = [self.level(task, run, u) for u in unseen]
                if not all(ents):
                    rows.append([label] + ["—"] * (2 * len(unseen) + 1) + ["figure only"])
                    continue
                errs = [abs(e["best_alpha"] - e["linear_alpha"]) for e in ents]  # type: ignore[index]
                dist[label] = float(np.mean(errs))
                rows.append([label] + [f"{e['best_alpha']:.3f}" for e in ents] + [f"{x:.3f}" for x in errs]  # type: ignore[index]
                            + [f"{dist[label]:.3f}", "closest (claim)" if label == "FTN-gc16" and task == "denoise" else "figure only"])
                curves[label] = ents
            out.append(f"### {TASK_TITLES.get(task, task)}, {get_task(task).level_name} {l1:g} -> {l2:g}")
            out += ["", table(header, rows), ""]
            if dist:
                closest = min(dist, key=dist.__getitem__)
                claim = "agrees with" if closest == "FTN-gc16" else "differs from"
                if task == "denoise":
                    self.findings.append(f"Figure 6, {task}: the best alphas closest to linear are {closest}'s "
                                         f"(mean distance {dist[closest]:.3f}); this {claim} the paper's claim (FTN-gc16).")
                name = f"reproduce-fig6-{task}.png"
                self._plot_fig6(task, curves, self.out / name)
                out.append(f"![PSNR against alpha, {task}]({name})")
                out.append("")
        out.append(f"Paper: {PAPER['fig6']}")
        return "\n".join(out)

    def _plot_fig6(self, task: str, curves: dict[str, list], path: Path) -> None:
        plt = _plt()
        spec = self.recipe.tasks[task]
        l1, l2 = spec["levels"]
        unseen = spec["unseen"]
        fig, axes = plt.subplots(1, len(unseen), figsize=(5.2 * len(unseen), 4.2), squeeze=False)
        for ax, (k, u) in zip(axes[0], enumerate(unseen)):
            for label, ents in curves.items():
                e = ents[k]
                (line,) = ax.plot(e["alphas"], e["psnr"], label=label, marker=".", ms=3)
                ax.plot([e["best_alpha"]], [e["best_psnr"]], "o", color=line.get_color())
            ax.axvline(linear_alpha(u, l1, l2), color="red", ls="--", lw=1)
            ax.set_title(f"test level {u:g}* (linear alpha {linear_alpha(u, l1, l2):.2f})")
            ax.set_xlabel(f"alpha (0 = {l1:g}, 1 = {l2:g})")
            ax.set_ylabel("PSNR (dB)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.plots.append(path.name)

    def smoothness(self, strips: dict[str, Path], data: EvalData) -> str:
        cfg = self.recipe.smooth
        task = cfg["task"]
        out = [f"## 6. Smoothness and colour drift — Figures 7/8 analogue (level-{cfg['level']:g} input swept over alpha)", ""]
        ents = {label: self.smooths.get(f"{task}/{run}") for label, run in TABLE2_ROWS}
        ents = {k: v for k, v in ents.items() if v}
        if not ents:
            return "\n".join(out + ["No runs to analyse yet."])
        any_e = next(iter(ents.values()))
        out.append(f"Input: {TASK_TITLES.get(task, task)} at {get_task(task).level_name} {cfg['level']:g} (the level-1 "
                   f"level, so alpha = 0 is optimal and larger alphas over-smooth), {len(any_e['images'])} image(s) "
                   f"({', '.join(any_e['images'])}). Colour shift: per-channel mean of the output minus that of the clean "
                   "image (0-255, averaged over images; a vector R, G, B and its norm); largest drift: the largest "
                   "distance of that vector from its value at alpha 0 (the stage-1 network, the same for every method); "
                   "RMSE on 0-255; SSIM as in `ftn.eval.metrics`. Largest step: the largest change between consecutive "
                   "alphas (for the colour shift, of the vector).")
        out.append("")
        header = ["method", "colour shift at alpha 1 (R, G, B)", "norm at 1", "largest drift from alpha 0", "largest step: colour",
                  "RMSE at 0", "RMSE at 1", "largest step: RMSE", "SSIM at 0", "SSIM at 1", "largest step: SSIM",
                  "largest step: PSNR", "paper"]
        rows, drift = [], {}
        for label, e in ents.items():
            p = e["path"]
            shift = p[-1]["colour_shift"]
            drift[label] = largest_drift([x["colour_shift"] for x in p])
            rows.append([label, "(" + ", ".join(f"{v:+.2f}" for v in shift) + ")", f2(p[-1]["colour_shift_norm"]),
                         f2(drift[label]), f2(largest_step([x["colour_shift"] for x in p])), f2(p[0]["rmse"]),
                         f2(p[-1]["rmse"]), f2(largest_step([x["rmse"] for x in p])), f2(p[0]["ssim"], 4),
                         f2(p[-1]["ssim"], 4), f2(largest_step([x["ssim"] for x in p]), 4),
                         f2(largest_step([x["psnr"] for x in p])), "images only"])
        out += [table(header, rows), ""]
        alphas = [x["alpha"] for x in any_e["path"]]
        for metric, nd, title in (("colour_shift_norm", 2, "colour shift norm"), ("rmse", 2, "RMSE (0-255)"), ("ssim", 4, "SSIM")):
            out.append(f"Per alpha, {title}:")
            out.append("")
            out.append(table(["method"] + [f"{a:.3f}".rstrip("0").rstrip(".") if a else "0" for a in alphas],
                             [[label] + [f2(x[metric], nd) for x in e["path"]] for label, e in ents.items()]))
            out.append("")
        self._plot_smooth(ents, self.out / "reproduce-smoothness.png")
        out.append("![colour shift, RMSE and SSIM against alpha](reproduce-smoothness.png)")
        out.append("")
        if strips:
            crops_figure(self.recipe, strips, data, self.out / "reproduce-crops.png")
            self.plots.append("reproduce-crops.png")
            for label, p in strips.items():
                name = f"reproduce-strip-{_slug(label)}.png"
                shutil.copyfile(p, self.out / name)
                self.plots.append(name)
            out.append(f"Crops (centre {cfg['strip_crop']} px of {any_e['images'][0]}) at alpha = "
                       f"{', '.join(f'{a:g}' for a in cfg['strip_alphas'])}, one row per method "
                       "(single strips: `reproduce-strip-<method>.png`):")
            out += ["", "![crops along alpha](reproduce-crops.png)", ""]
        out.append(f"Paper: {PAPER['fig78']}")
        fine = [k for k in ("FTN-gc16",) if k in drift]
        others = [k for k in ("DNI", "CFSNet") if k in drift]
        if fine and others:
            worse = [k for k in others if drift[k] > drift["FTN-gc16"]]
            self.findings.append(
                f"Colour drift ({task}, level {cfg['level']:g} input): largest drift of the colour shift from alpha 0: "
                + ", ".join(f"{k} {drift[k]:.2f}" for k in drift)
                + f"; the paper expects DNI and CFSNet above FTN-gc16: {'yes' if len(worse) == len(others) else 'no'}"
                f" ({', '.join(worse) or 'neither'} above)."
            )
        return "\n".join(out)

    def _plot_smooth(self, ents: dict[str, dict], path: Path) -> None:
        plt = _plt()
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for label, e in ents.items():
            a = [x["alpha"] for x in e["path"]]
            for ax, metric in zip(axes, ("colour_shift_norm", "rmse", "ssim")):
                ax.plot(a, [x[metric] for x in e["path"]], marker=".", ms=3, label=label)
        for ax, title in zip(axes, ("colour shift norm (0-255)", "RMSE (0-255)", "SSIM")):
            ax.set_title(title)
            ax.set_xlabel("alpha")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.plots.append(path.name)

    def table4(self) -> str:
        from ftn.eval.complexity import ComplexityRow, format_table

        out = ["## 7. Table 4 — complexity", ""]
        if self.comp is None:
            return "\n".join(out + ["Not computed."])
        spec = self.recipe.complexity
        paper_rows = [ComplexityRow(**r) for r in self.comp["paper_setting"]]
        ours_rows = [ComplexityRow(**r) for r in self.comp["trained"]]
        out.append(f"The paper's setting: `{spec.get('arch', 'adafm_net')}` {json.dumps(spec.get('arch_options') or {})} on a "
                   f"{spec.get('size', 256)} x {spec.get('size', 256)} RGB input (the paper's figures are for 256 x 256), "
                   "MACs counted by `torch.utils.flop_counter` (`ftn.eval.complexity.table4`), the paper's Table 4 beside:")
        out += ["", format_table(paper_rows, markdown=True), ""]
        trained = self.recipe.raw.get("train", {})
        out.append(f"The network trained in this study (`{trained.get('arch', 'adafm_net')}` "
                   f"{json.dumps(trained.get('arch_options') or {})}), same input size (paper columns are for the full network):")
        out += ["", format_table(ours_rows, markdown=True), "",
                "The paper's 'GFLOPs' are multiply-accumulates of the convolutions; `docs/complexity.md` explains every "
                "difference. Placements as in `ftn.eval.complexity` (FTN on every conv but the last; the trained FTN runs "
                "above tune every conv, the default of `ftn.attach`)."]
        return "\n".join(out)

    def budget_check(self, other: Report, path: str) -> str:
        """The same tables' key numbers from a study that differs only in its budget (``compare_with``)."""
        mine = self.recipe.raw.get("tuner", {}).get("iterations")
        theirs = other.recipe.raw.get("tuner", {}).get("iterations")
        out = [f"## 8. Budget check: stage 2 with {theirs} instead of {mine} iterations", "",
               f"Where this study's ordering differs from the paper's, is it the methods or the short stage 2? `{path}` "
               f"trains every stage-2 run again with {theirs} iterations, from the same stage-1 bases, everything else "
               f"equal (its own report: `{other.out}/results.md`). Per method: PSNR at level 2 (adaptation), mean best PSNR "
               "over the unseen levels (interpolation), and the mean distance of the best alpha from the linear one.", ""]
        for task, spec in self.recipe.tasks.items():
            l1, l2 = spec["levels"]
            unseen = spec["unseen"]
            rows = []
            order: dict[str, list[tuple[str, float]]] = {"short": [], "long": []}
            for label, run in TABLE2_ROWS:
                cells = [label]
                for key, rep in (("short", self), ("long", other)):
                    a2 = rep.best(task, run, l2)
                    ents = [rep.level(task, run, u) for u in unseen]
                    if a2 is None or any(e is None for e in ents):
                        cells += ["—"] * 3
                        continue
                    interp = float(np.mean([e["best_psnr"] for e in ents]))
                    dist = float(np.mean([abs(e["best_alpha"] - e["linear_alpha"]) for e in ents]))
                    cells += [f2(a2), f2(interp), f"{dist:.3f}"]
                    order[key].append((label, interp))
                rows.append(cells)
            out.append(f"### {TASK_TITLES.get(task, task)}")
            out.append("")
            out.append(table(["method", f"level 2, {mine} it", f"unseen (mean best), {mine} it", f"alpha distance, {mine} it",
                              f"level 2, {theirs} it", f"unseen (mean best), {theirs} it", f"alpha distance, {theirs} it"], rows))
            out.append("")
            for key, n in (("short", mine), ("long", theirs)):
                if order[key]:
                    ranked = " > ".join(k for k, _ in sorted(order[key], key=lambda kv: -kv[1]))
                    out.append(f"Interpolation order with {n} iterations: {ranked}.")
            out.append("")
            if order["short"] and order["long"]:
                self.findings.append(
                    f"Budget check ({task}): interpolation order with {mine} stage-2 iterations "
                    + " > ".join(k for k, _ in sorted(order['short'], key=lambda kv: -kv[1]))
                    + f"; with {theirs}: " + " > ".join(k for k, _ in sorted(order['long'], key=lambda kv: -kv[1])) + "."
                )
        return "\n".join(out)

    def findings_section(self) -> str:
        out = ["## Where our results and the paper's agree or differ", "",
               "Computed from the tables above; a difference is a question to investigate (a baseline's bug is as "
               "likely as a real effect of the smaller budget), not a conclusion. What was checked, and what the "
               "budget check (section 8) changed: `docs/investigation.md`.", ""]
        out += [f"- {f}" for f in self.findings] or ["- (no complete comparison yet)"]
        return "\n".join(out)


def _slug(label: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in label).strip("-").replace("--", "-")


def _method_label(run: Run) -> str:
    if run.stage == "base":
        return "—"
    opts = run.config.method_options
    text = run.config.method + (" " + json.dumps(opts) if opts else "")
    if run.config.targets:
        text += f" on `{run.config.targets}`"
    return text


def _levels_label(run: Run) -> str:
    return f"{run.levels[0]:g} -> {run.levels[1]:g}" if run.levels else f"{run.level:g}"


# -- building ------------------------------------------------------------------------------------


def build_report(recipe: Recipe, out: Path, *, progress: bool) -> tuple[str, dict[str, int]]:
    """The markdown of sections 1-8 and the findings for ``recipe`` (figures written to ``out``), and how many
    evaluations ran / came from the caches. Every trained run counts (weight or manifest line)."""
    data = EvalData(recipe)
    counts = {"evaluated": 0, "cached": 0}

    def note(cached: bool) -> None:
        counts["cached" if cached else "evaluated"] += 1

    evals, smooths, filters, strips, infos = {}, {}, {}, {}, {}
    smooth_runs = {run for _, run in TABLE2_ROWS}
    ready = [r for r in recipe.runs if r.trained]
    for i, run in enumerate(ready):
        infos[run.key], cached = model_info(run)
        note(cached)
        result, cached = evaluate_run(recipe, run, data)
        evals[run.key] = result
        note(cached)
        if run.stage == "tuner" and run.task == recipe.smooth["task"] and run.name in smooth_runs:
            s, cached = smooth_run(recipe, run, data)
            smooths[run.key] = s
            note(cached)
            label = dict((r, lab) for lab, r in TABLE2_ROWS)[run.name]
            strips[label] = run.dir / "strip.png"
        if run.stage == "tuner" and ftn.METHODS[run.config.method].capabilities(
                ftn.METHODS[run.config.method].config(**run.config.method_options)).exact_export:
            f, cached = filters_run(run)
            filters[run.key] = f
            note(cached)
        if progress:
            print(f"evaluated {i + 1}/{len(ready)}: {run.key}", flush=True)
    comp, cached = complexity(recipe)
    note(cached)
    # keep the order of TABLE2_ROWS in the strips
    strips = {label: strips[label] for label, _ in TABLE2_ROWS if label in strips}
    out.mkdir(parents=True, exist_ok=True)
    report = Report(recipe, evals, smooths, filters, comp, out, infos)
    sections = [report.header(), report.budget(), report.table2(), report.table1(), report.table3(), report.fig5(),
                report.fig6(), report.smoothness(strips, data), report.table4()]
    compare = recipe.raw.get("compare_with")
    if compare:  # the same study at another budget: only its cached evaluations are read
        other = load_recipe(Path(compare))
        other_evals, other_data = {}, EvalData(other)
        for run in other.runs:
            if run.trained:
                other_evals[run.key], cached = evaluate_run(other, run, other_data)
                note(cached)
        sections.append(report.budget_check(Report(other, other_evals, {}, {}, None, other.out), compare))
    sections.append(report.findings_section())
    return "\n\n".join(sections).rstrip() + "\n", counts
