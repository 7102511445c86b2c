"""``ftn export``: a plain network at one setting (safetensors, or the original checkpoint layout) or ONNX."""

from __future__ import annotations

import argparse

__all__ = ["add_parser"]


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import run_export

    return run_export(args.model, args.out, fmt=args.format, alpha=args.alpha, level=args.level, layout=args.layout,
                      per_pixel=args.per_pixel, fp16=args.fp16)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``ftn export`` to the ``ftn`` command's subparsers."""
    export = sub.add_parser("export", help="write a model for other tools: plain safetensors at one alpha, or ONNX "
                            "(alpha or per-pixel maps as inputs, or one setting baked in; float32 or float16)")
    export.add_argument("--model", required=True, help="a shipped model name or a model file")
    export.add_argument("--alpha", help="the alpha to bake in (0 = the model's first level, 1 its second), for "
                        "safetensors or a one-input ONNX file; several axes: 0.3,0.8 (the model's axis order) or sigma=1.5")
    export.add_argument("--level", help="a real level (e.g. sigma 50) instead of --alpha, via the calibration; "
                        "several axes: sigma=12,quality=70")
    export.add_argument("--format", choices=["safetensors", "pth", "onnx"], help="default: from the suffix of -o")
    export.add_argument("--layout", choices=["original", "ftn"],
                        help="with --alpha/--level: 'original' (the default for a model ftn tune made from another "
                             "checkpoint) writes the plain base in that checkpoint's key layout (wrapper, prefix, key "
                             "names; .pth or .safetensors), so the tool that read the original reads it; 'ftn' writes "
                             "ftn's own safetensors")
    export.add_argument("--per-pixel", action="store_true",
                        help="ONNX: inputs image and alpha_map (N, 1, H, W), or (N, D, H, W) for D axes, at the "
                             "image's size: a strength per pixel")
    export.add_argument("--fp16", action="store_true",
                        help="ONNX: weights, computation, inputs and output in float16 (checked against PyTorch "
                             "float32: PSNR >= 45 dB)")
    export.add_argument("-o", "--out", required=True, help="the file to write")
    export.set_defaults(func=_cmd_export)

