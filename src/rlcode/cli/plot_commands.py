"""``rlcode plot RUN_DIR...`` (PNG learning curves, FrozenLake policies) and ``rlcode push RUN_DIR REPO_ID``."""

from __future__ import annotations

import argparse

from rlcode.run.metrics import EPISODE_RETURN


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    plot = subparsers.add_parser(
        "plot",
        help="PNG learning curves (and FrozenLake policies) of run directories",
        description="Plot run directories: one learning-curve PNG per environment with the mean and a 95%% "
        "confidence band across seeds per algorithm, and for tabular FrozenLake runs the learned greedy "
        "policy beside an optimal one with the state values as a heat map.",
    )
    plot.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by `rlcode train`"
    )
    plot.add_argument(
        "--out", metavar="DIR", default=None, help="where to write the PNGs (default: RUN_DIR/../plots)"
    )
    plot.add_argument(
        "--metric", default=EPISODE_RETURN, help="metrics.jsonl key to plot (default: %(default)s)"
    )
    plot.set_defaults(handler=_run_plot)

    push = subparsers.add_parser(
        "push",
        help="upload a run directory to the Hugging Face Hub",
        description="Create (or reuse) a model repository on the Hugging Face Hub and upload the run directory: "
        "checkpoint, metrics and model card. Needs `pip install 'rlcode[hub]'` and a login (`hf auth login`).",
    )
    push.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `rlcode train`")
    push.add_argument("repo_id", metavar="REPO_ID", help="user/name of the model repository")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    push.set_defaults(handler=_run_push)


def _run_plot(args: argparse.Namespace) -> int:
    from rlcode.run.plots import plot_runs

    for path in plot_runs(args.run_dirs, args.out, args.metric):
        print(path)
    return 0


def _run_push(args: argparse.Namespace) -> int:
    from rlcode.run.hub import push_to_hub

    print(push_to_hub(args.run_dir, args.repo_id, token=args.token, private=args.private))
    return 0
