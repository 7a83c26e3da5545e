"""Command-line interface: ``rlcode train ALGO``, ``rlcode evaluate RUN_DIR`` and each tier's commands.

Flags of ``train`` are generated from the algorithm's config dataclass, so ``--help`` documents
every field and a config file (``--config file.toml``) can set any of them; flags given on the
command line override the file. Tier-specific commands (``optimum``, ``rlhf-demo``, ``sweep``, ...)
are added by the modules in ``COMMAND_MODULES``, each exposing ``add_commands(subparsers)``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlcode import __version__
from rlcode.algorithms import ALGORITHMS, get_algorithm
from rlcode.configs import ConfigError, add_config_arguments, check_episodes, config_from_args
from rlcode.errors import TrainingDiverged, UserError, shorten
from rlcode.extras import as_missing_extra, require

MAX_MESSAGE = 1000  # characters of one error line; a message quoting a 100 kB env id is cut

COMMAND_MODULES: list[str] = ["rlcode.cli.sweep_commands", "rlcode.tabular.commands", "rlcode.cli.plot_commands", "rlcode.rlhf.commands", "rlcode.cli.tour"]


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train an agent", description="Train an agent.")
    algorithms = train.add_subparsers(dest="algorithm", metavar="ALGORITHM", required=True)
    for algo in ALGORITHMS.values():
        parser = algorithms.add_parser(
            algo.name,
            help=algo.summary,
            description=f"Train {algo.summary}. Every flag sets the config field of the same name.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--config", metavar="FILE", help="TOML, JSON or rl-zoo YAML file of config values")
        parser.add_argument("--run-dir", metavar="DIR", help="where to write checkpoint and metrics; it must not "
                            "hold another run (default: a new runs/ALGO-ENV-seedN-TIME-XXXXXX)")
        existing = parser.add_mutually_exclusive_group()
        existing.add_argument("--resume", metavar="RUN_DIR", default=None,
                              help="continue the run in RUN_DIR exactly, with the config saved in its checkpoint")
        existing.add_argument("--overwrite", action="store_true",
                              help="replace rlcode's files of an earlier run in --run-dir (never your own files)")
        parser.add_argument(
            "--quiet", action="store_true", help="no progress or table; print the result as one JSON line"
        )
        parser.add_argument(
            "--tensorboard", action="store_true", help="also write TensorBoard event files to RUN_DIR/tensorboard"
        )
        parser.add_argument("--wandb-project", metavar="NAME",
                            help="also log to this W&B project (needs pip install 'rlcode[wandb]')")
        add_config_arguments(parser, algo.load("config"))
        parser.set_defaults(handler=_run_train)


def _resume_target(args: argparse.Namespace, config_class: type) -> str:
    """The run directory ``--resume`` continues, after checking that nothing asks for a different run."""
    import dataclasses

    from rlcode.run.run_dirs import RunDirError

    if args.run_dir is not None and Path(args.run_dir).resolve() != Path(args.resume).resolve():
        raise RunDirError(f"--resume {args.resume} continues that directory; drop --run-dir {args.run_dir}.")
    flags = sorted(f.name for f in dataclasses.fields(config_class) if hasattr(args, f.name))
    if flags or args.config:  # the saved config is the run's; changing it would not continue the run
        given = f"--config {args.config}" if args.config else "--" + flags[0].replace("_", "-")
        raise RunDirError(f"--resume continues {args.resume} with the config saved in it; drop {given} "
                          "(to change the config, start a new run with --run-dir).")
    saved = run_algorithm(args.resume)
    if saved != args.algorithm:
        raise RunDirError(f"{args.resume} holds a {saved} run; resume it with `rlcode train {saved} --resume "
                          f"{args.resume}`.")
    return str(args.resume)


def _run_train(args: argparse.Namespace) -> int:
    algo = get_algorithm(args.algorithm)
    if args.resume is not None:
        run_dir, config = _resume_target(args, algo.load("config")), None
    else:
        run_dir, config = args.run_dir, config_from_args(algo.load("config"), args, args.config, algo.readers())
    # Asked-for loggers must be installed before any work (the library itself only warns about wandb).
    if args.tensorboard:
        require("tensorboard", "tensorboard", "TensorBoard logging (--tensorboard)")
    if args.wandb_project:
        require("wandb", "wandb", "W&B logging (--wandb-project)")
    from rlcode.run.metrics import set_defaults

    set_defaults(tensorboard=args.tensorboard, wandb_project=args.wandb_project)
    try:
        result = algo.load("train")(config, run_dir=run_dir, quiet=args.quiet, resume=args.resume is not None,
                                    overwrite=args.overwrite)
    finally:
        set_defaults(tensorboard=False, wandb_project="")
    if args.quiet:
        print(_json_line(result))
    return 0


def _json_line(result: dict[str, Any]) -> str:
    """The scalar entries of a result as one JSON line (what --quiet prints)."""
    return json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float, str, type(None)))})


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained run directory",
        description="Load a run directory's checkpoint and evaluate the agent it holds.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `rlcode train`")
    parser.add_argument("--episodes", type=int, default=None, help="episodes to run (default: per algorithm)")
    parser.add_argument(
        "--stochastic", action="store_true", help="sample actions instead of taking the most likely one"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the evaluation episodes")
    parser.add_argument("--video", metavar="FILE", default=None, help="render episodes to a .gif or .mp4 file")
    parser.add_argument("--quiet", action="store_true", help="print nothing but the result line")
    parser.set_defaults(handler=_run_evaluate)


def run_algorithm(run_dir: str | Path) -> str:
    """The algorithm name recorded in a run directory's (last complete) checkpoint."""
    from rlcode.run.checkpoints import CheckpointError, checkpoint_path, find_checkpoint

    try:
        state_path = find_checkpoint(run_dir) / "state.json"
    except CheckpointError:
        state_path = checkpoint_path(run_dir) / "state.json"
    try:
        return str(json.loads(state_path.read_text())["algorithm"])
    except FileNotFoundError:
        raise CheckpointError(
            f"{str(run_dir)!r} holds no checkpoint ({state_path} is missing); pass a run directory written "
            "by `rlcode train`."
        ) from None
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{state_path} does not name an algorithm; it was not written by rlcode.") from None


def _run_evaluate(args: argparse.Namespace) -> int:
    if args.episodes is not None:
        check_episodes(args.episodes, "--episodes")
    algo = get_algorithm(run_algorithm(args.run_dir))
    result = algo.load("evaluate")(
        args.run_dir,
        episodes=args.episodes,
        deterministic=not args.stochastic,
        seed=args.seed,
        video=args.video,
        quiet=args.quiet,
    )
    if args.quiet:  # as `train --quiet`: the result as one JSON line, not silence
        print(_json_line(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlcode", description="Readable, verified and fast reinforcement learning."
    )
    parser.add_argument("--version", action="version", version=f"rlcode {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(subparsers)
    _add_evaluate(subparsers)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers)
    return parser


# What to do about the file-system errors a user meets, by errno.
OS_ERROR_FIXES: dict[int, str] = {
    errno.EEXIST: "a file is in the way: pass a path that is a folder or does not exist yet",
    errno.ENOTDIR: "part of the path is a file, not a folder: pass a path below a folder",
    errno.EISDIR: "it is a folder: pass the path of a file",
    errno.EACCES: "permission denied: pick a place you may write to (or change its permissions)",
    errno.EPERM: "not permitted: pick a place you may write to (or change its permissions)",
    errno.EROFS: "the file system is read-only: pick a place you may write to",
    errno.ENOSPC: "no space left on the device: free some space or pick another disk",
    errno.ENOENT: "it does not exist: check the path",
}


def _os_error_message(error: OSError) -> str:
    """A file-system failure as one line naming the path and what to do: permission, a file in the way, ..."""
    if error.filename is None:  # raised by rlcode with its own message, or a failure without a path
        return str(error) or type(error).__name__
    path = repr(str(error.filename))
    if error.filename2 is not None:
        path += f" -> {str(error.filename2)!r}"
    fix = OS_ERROR_FIXES.get(error.errno or 0, "check that path")
    return f"{error.strerror or type(error).__name__}: {path}; {fix}."


def _one_line(message: str) -> str:
    """A message as one line of bounded length: the source quotes a huge input at most once, cut here."""
    return shorten(" ".join(message.split("\n")), MAX_MESSAGE)


def _user_error_code(error: BaseException) -> int | None:
    """The exit code of an error meant for users (printed as one line), or None for a bug."""
    from rlcode.run.checkpoints import CheckpointError

    if isinstance(error, UserError):
        return error.exit_code
    if isinstance(error, (ConfigError, CheckpointError)) or type(error) is ValueError:
        return 2
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; input a user can get wrong ends as one ``rlcode: error:`` line, not a traceback.

    Exit codes: 0 done, 2 refused input (or a missing extra / a file-system problem), 3 training
    diverged (the last good checkpoint is kept). Anything else keeps its traceback: it is a bug.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ImportError as error:  # an optional package is missing: one line naming its pip extra
        missing = as_missing_extra(error)
        if missing is None:
            raise
        print(f"rlcode: error: {missing}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"rlcode: error: {_one_line(_os_error_message(error))}", file=sys.stderr)
        return 2
    except (UserError, ValueError, RuntimeError) as error:
        code = _user_error_code(error)
        if code is None:
            raise
        kept = " Training stopped; a checkpoint saved before this is kept." if isinstance(error, TrainingDiverged) else ""
        print(f"rlcode: error: {_one_line(str(error))}{kept}", file=sys.stderr)
        return code
