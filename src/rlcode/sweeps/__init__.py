"""Sweeps: many seeds and hyperparameter grids, ``rlcode.algorithms.train`` mapped over a backend.

``sweeps`` builds the configs, runs the trials and summarises them (mean, IQM, bootstrap CI);
``backends`` runs trials on a local process pool or on Ray. The names below are the public API.
"""

from rlcode.sweeps.sweeps import SweepResult, build_configs, print_summary, run_sweep, sweep

__all__ = ["SweepResult", "build_configs", "print_summary", "run_sweep", "sweep"]
