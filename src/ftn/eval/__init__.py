"""Evaluation: metrics, alpha sweeps and complexity. Submodules are imported on demand."""
