"""A one-minute demonstration that needs no data: teach a small network two noise levels, then slide between them.

Level 1 is Gaussian noise sigma 15, level 2 sigma 50 (0-255 scale), on synthetic images. Stage 1
trains a mini AdaFM-Net for level 1; stage 2 freezes it, attaches an FTN to every conv and trains only
the FTN for level 2 at alpha = 1. The printout shows, for test images at sigma 15, 30 (never trained)
and 50, how the denoising quality moves with alpha: each noise level is served best near its own alpha.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor

from .archs import build_arch
from .methods import attach

__all__ = ["run_demo", "synthetic_images"]


def synthetic_images(n: int, size: int, generator: torch.Generator) -> Tensor:
    """Random smooth gradients with random rectangles and discs on top: edges of every orientation."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = []
    for _ in range(n):
        c0, c1 = torch.rand(3, 1, 1, generator=generator), torch.rand(3, 1, 1, generator=generator)
        img = c0 * xx + c1 * (1 - yy)
        for _ in range(6):
            colour = torch.rand(3, 1, 1, generator=generator)
            cx, cy, r = torch.rand(3, generator=generator).tolist()
            if torch.rand(1, generator=generator).item() < 0.5:
                mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < (0.05 + 0.2 * r) ** 2
            else:
                mask = ((xx - cx).abs() < 0.05 + 0.2 * r) & ((yy - cy).abs() < 0.05 + 0.15 * r)
            img = torch.where(mask, colour, img)
        images.append(img.clamp(0, 1))
    return torch.stack(images)


def _noisy(clean: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    return clean + (sigma / 255.0) * torch.randn(clean.shape, generator=generator)


def _psnr(a: Tensor, b: Tensor) -> float:
    return float(10 * torch.log10(1.0 / F.mse_loss(a.clamp(0, 1), b)))


def _train(model: torch.nn.Module, params: list, sigma: float, steps: int, lr: float, gen: torch.Generator,
           alpha: float | None = None) -> None:
    optimiser = torch.optim.Adam(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for _ in range(steps):
        clean = synthetic_images(8, 48, gen)
        noisy = _noisy(clean, sigma, gen)
        out = model(noisy) if alpha is None else model(noisy, alpha=alpha)
        loss = F.l1_loss(out, clean)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()


def run_demo(steps: int = 200, seed: int = 0, groups: int = 1, print_fn=print) -> dict[str, list[float]]:
    """Train both stages, sweep alpha and print the table; returns the measured PSNR curves."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    level1, level2, unseen = 15.0, 50.0, 30.0
    net = build_arch("adafm_net", size="mini", image_skip=True)
    start = time.perf_counter()
    print_fn(f"stage 1: a mini AdaFM-Net ({sum(p.numel() for p in net.parameters()):,} parameters) learns to "
             f"denoise sigma {level1:g} (level 1, alpha = 0), {steps} steps on synthetic images ...")
    _train(net.train(), list(net.parameters()), level1, steps, 2e-3, gen)

    model = attach(net, "ftn", groups=groups)
    model.freeze_base().train()
    print_fn(f"stage 2: base frozen; an FTN (G={groups}) on each of its {len(model.target_names)} convs "
             f"({sum(p.numel() for p in model.tuner_parameters()):,} parameters) learns sigma {level2:g} "
             f"(level 2, alpha = 1), {steps} steps ...")
    _train(model, model.tuner_parameters(), level2, steps, 3e-3, gen, alpha=1.0)
    print_fn(f"trained in {time.perf_counter() - start:.0f} s\n")

    model.eval()
    test_gen = torch.Generator().manual_seed(seed + 1)
    clean = synthetic_images(4, 96, test_gen)
    levels = (level1, unseen, level2)
    noisy = {s: _noisy(clean, s, test_gen) for s in levels}
    curves: dict[str, list[float]] = {"alpha": [], **{f"sigma{s:g}": [] for s in levels}}
    print_fn("PSNR (dB) of the output on test images noised at each sigma (input PSNR in the header)")
    print_fn("alpha  " + "".join(f"{f'sigma {s:g} ({_psnr(noisy[s], clean):.1f})':>19}" for s in levels))
    with torch.no_grad():
        for i in range(11):
            alpha = i / 10
            curves["alpha"].append(alpha)
            row = []
            for s in levels:
                value = _psnr(model(noisy[s], alpha=alpha), clean)
                curves[f"sigma{s:g}"].append(value)
                row.append(value)
            print_fn(f"{alpha:5.1f}  " + "".join(f"{v:19.2f}" for v in row))
        best = {s: curves["alpha"][max(range(11), key=curves[f"sigma{s:g}"].__getitem__)] for s in levels}
        plain = model.export(0.5)
        gap = float((plain(noisy[unseen]) - model(noisy[unseen], alpha=0.5)).abs().max())
    print_fn("best alpha: " + ", ".join(f"sigma {s:g} -> {best[s]:.1f}" for s in levels))
    print_fn(f"export(0.5) gives a plain {type(plain).__name__}; max |difference| to the tunable model: {gap:.1e}")
    return curves
