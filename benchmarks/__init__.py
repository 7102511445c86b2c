"""The benchmarks and studies that write ``docs/`` (run from the repository root as modules, e.g.
``python -m benchmarks.reproduce --recipe configs/reproduce/mini.yaml --only-report``,
``python -m benchmarks.gan_ablation``, ``python -m benchmarks.speed``). Not part of the ``ftn`` package."""
