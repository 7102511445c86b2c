"""Table 4 of the paper, recomputed: parameter counts asserted, MACs counted and checked by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import ftn
from ftn.eval.complexity import count_macs, format_table, table4


@pytest.fixture(scope="module")
def adafm_rows() -> dict:
    return {r.name: r for r in table4("adafm_net", 32, macs=False)}


@pytest.mark.parametrize("row", ["baseline", "+adafm", "+ftn", "+ftn(G=16)"])
def test_adafm_net_parameters_match_the_paper_within_0_01m(adafm_rows: dict, row: str) -> None:
    r = adafm_rows[row]
    assert abs(r.params / 1e6 - r.paper_params_m) < 0.01, (row, r.params)


def test_parameter_counts_are_exact(adafm_rows: dict) -> None:
    # Baseline 1,406,787; FTN adds per conv 2 (C^2/G + C) + 2C (PReLU) + 1 (skip weight), C = C_out,
    # on the 36 convs but the last: 35 with C = 64 and conv_up with C = 256.
    per_conv = lambda c, g: 2 * (c * c // g + c) + 2 * c + 1  # noqa: E731
    assert adafm_rows["baseline"].params == 1_406_787
    assert adafm_rows["+ftn"].params == 1_406_787 + 35 * per_conv(64, 1) + per_conv(256, 1)
    assert adafm_rows["+ftn(G=16)"].params == 1_406_787 + 35 * per_conv(64, 16) + per_conv(256, 16)
    # AdaFM: 5x5 depth-wise + bias after the 32 convs of the 16 residual blocks.
    assert adafm_rows["+adafm"].params == 1_406_787 + 32 * 64 * 26
    # CFSNet (ours): a copy of each of the 16 blocks plus a 64-vector coupling per block.
    assert adafm_rows["+cfsnet"].params == 1_406_787 + 16 * (2 * (64 * 64 * 9 + 64) + 64)


def test_cfsnet30_sr_parameters() -> None:
    rows = {r.name: r for r in table4("cfsnet", 16, macs=False)}
    assert rows["baseline"].params == 2_366_915
    for name in ("baseline", "+adafm", "+ftn"):
        assert abs(rows[name].params / 1e6 - rows[name].paper_params_m) < 0.01, name


def test_macs_are_counted_and_ftn_costs_nothing_on_the_fast_path() -> None:
    size = 32
    rows = {r.name: r for r in table4("adafm_net", size, arch_options={"size": "mini"})}
    base = rows["baseline"]
    # Count the mini AdaFM-Net's conv MACs by hand: C=32, 8 blocks, stride-2 head.
    c, half, full = 32, (size // 2) ** 2, size**2
    by_hand = (3 * c * 9) * half + (2 * 8 + 1) * (c * c * 9) * half + (c * 4 * c * 9) * half + (c * c * 9) * full + (c * 3 * 9) * full
    assert base.macs == by_hand
    for name in ("+ftn", "+ftn(G=16)"):
        assert rows[name].fast_macs == base.macs, "cached kernels must make FTN free per image"
        assert rows[name].macs > base.macs, "computing FTN(f) in the forward has a cost"
    # FTN's own cost: per tuned conv, two 1x1 convs over C_in*k*k positions of C_out channels.
    convs = [m for m in ftn.build_arch("adafm_net", size="mini").modules() if isinstance(m, nn.Conv2d)][:-1]
    ftn_macs = sum(2 * m.in_channels * 9 * m.out_channels * m.out_channels for m in convs)
    assert rows["+ftn"].macs - base.macs == ftn_macs
    assert rows["+adafm"].fast_macs > base.macs and rows["+cfsnet"].macs > 1.5 * base.macs


def test_count_macs_of_a_single_conv() -> None:
    conv = nn.Conv2d(4, 8, 3, padding=1)
    assert count_macs(conv, torch.rand(1, 4, 10, 10)) == 4 * 8 * 9 * 100


def test_format_table_lists_every_row(adafm_rows: dict) -> None:
    text = format_table(list(adafm_rows.values()), markdown=True)
    for name in ("baseline", "+cfsnet", "+adafm", "+ftn", "+ftn(G=16)"):
        assert f"| {name} |" in text


@pytest.mark.parametrize(
    ("method", "options", "same"),
    [
        ("ftn", {"groups": 1}, True),
        ("ftn", {"groups": 4, "depth": 3}, True),
        ("ftn", {"groups": 1, "spatial": True}, True),
        ("dni", {}, True),
        ("adafm", {"kernel_size": 1}, True),
        ("adafm", {"kernel_size": 3}, False),  # a residual depth-wise conv per layer: real extra work
        ("dynamic_net", {}, False),
    ],
)
def test_fixed_alpha_runs_the_plain_networks_operators(method, options, same) -> None:
    """The exact form of the speed claim: at a cached alpha, the same ATen ops on the same shapes."""
    from ftn.eval.complexity import aten_ops

    torch.manual_seed(0)
    net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=2).eval()
    x = torch.rand(1, 3, 24, 24)
    plain = aten_ops(net, x)
    import copy

    model = ftn.attach(copy.deepcopy(net), method, **options).eval()
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.01 * torch.randn_like(p))
    run = lambda inp: model(inp, alpha=0.5)  # noqa: E731
    with torch.inference_mode():
        run(x)  # fills the kernel caches
    assert (aten_ops(run, x) == plain) is same
