"""Reproduce the paper's evidence: train every run of a recipe (resumable, cached), evaluate, and write
``<out>/results.md`` with the paper's numbers beside ours, plus PNG plots under ``<out>/``.

    python -m benchmarks.reproduce --recipe configs/reproduce/mini.yaml                # train what is missing, then report
    python -m benchmarks.reproduce --recipe configs/reproduce/mini.yaml --only-report  # no training
    python -m benchmarks.reproduce --recipe configs/reproduce/mini.yaml --stop-after 50 # start no new run after 50 min

The seven items of the study (issue "[3/6] Reproduce the paper's evidence"):

1. Table 2: denoising sigma 20 -> 80 (CBSD68) and JPEG quality 40 -> 10 (LIVE1), From scratch, DNI,
   AdaFM, CFSNet, FTN-gc16, FTN-gc4, FTN; PSNR at the best alpha (grid search) and at the linear alpha.
2. Table 1: FTN vs FTN-deeper vs FTN-spatial, sigma 20 -> 50, tested at 20, 30*, 40*, 50.
3. Table 3: filter analysis (kernel MAE, filter-wise cosine) for FTN (G=16), FTN, fine-tuning (DNI).
4. Figure 5 analogue: interpolation (unseen levels) against adaptation (level 2) for G = 1, 4, 16, AdaFM.
5. Figure 6 analogue: PSNR against alpha at sigma 40 and 60; distance of the best alpha from 1/3, 2/3.
6. Figures 7/8 analogue: a sigma-20 input swept over alpha: colour shift, RMSE, SSIM, largest steps, crops.
7. Table 4: parameters and MACs (ftn.eval.complexity).
Sections 9-11 (PD-controllable SR, style transfer, per-pixel control) come from a perceptual recipe
(``configs/reproduce/perceptual.yaml``, :mod:`benchmarks.reproduce.perceptual`).

Modules: :mod:`.recipe` (Recipe, Run, load_recipe), :mod:`.training` (train_all), :mod:`.evaluation`
(the cached evaluations), :mod:`.report` (the restoration report), :mod:`.perceptual` (the perceptual
sections), :mod:`.manifest` (the weight manifest), :mod:`.cache`, :mod:`.paper` (``paper.yaml``: the
paper's numbers), ``__main__`` (the command line).

**Runs** live under the recipe's ``runs_dir`` (``<runs_dir>/<task>/<run>/``: model.safetensors, log.csv,
config.yaml; checkpoint.safetensors while a run is unfinished, deleted when it finishes). Evaluations
are cached beside each run (``eval.json``, ``smooth.json``, ``filters.json``, ``info.json``,
``strip.png``, ``pd.json``, ``style.json``) keyed by the model's sha256 and the evaluation settings; the
complexity table in ``<runs_dir>/complexity.json``.

**Weights stay out of git; their evidence stays in it.** ``.gitignore`` keeps every ``*.safetensors``,
``*.pt`` and ``*.pth`` under ``reproduce/`` out of git. What is committed per run: config, log, the
evaluation caches, and a line of ``<runs_dir>/MANIFEST.tsv`` (run, file, sha256, bytes; written when a run
finishes, :func:`benchmarks.reproduce.manifest.record_weights`). A run counts as trained when its weight
file *or* its manifest line exists, and its caches are keyed by the manifest's sha256 when the file is
absent, so ``--only-report`` rebuilds the report from a fresh clone. Where a step needs the weight itself
(a cache miss, a figure drawn from the network), it says which run and the one command that retrains it
(``--only '<task>/<run>'``: a run that ``--only`` selects is retrained when its weight file is absent).
The one exception: a long run that must continue on another day or machine may keep its in-progress
``checkpoint.safetensors`` in git, added on purpose with ``git add -f <run>/checkpoint.safetensors``
(a few MB, replaced as the run advances, ``git rm --cached`` it when the run ends; training deletes it).

Run names are the contract between a recipe and the report: per task ``base`` (stage 1, level 1),
``scratch-<level>`` (a base-stage network per other level), ``dni``, ``adafm``, ``cfsnet``,
``ftn-gc16``, ``ftn-gc4``, ``ftn`` (stage 2, level 2) and, for Table 1, ``ftn-to50``,
``ftn-deeper-to50``, ``ftn-spatial-to50`` (stage 2 to sigma 50: the paper's Table 1 marks 50 as seen).

Paths in a recipe are relative to the repository root (the command changes to it).
"""
