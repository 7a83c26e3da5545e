"""Optional dependencies: one pip extra per tier beyond the core install.

The core install (``pip install rlcode``) covers the tabular and policy-gradient tiers. Everything
else is imported where it is used, through ``require``, so that a missing package surfaces as one
line naming the fix (``pip install 'rlcode[lm]'``) instead of a bare ``ImportError``; the command
line prints that line and exits with status 2. Keep this module free of heavy imports: the CLI
imports it to build its parser.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The extra that brings each optional top-level module, and the name pip knows it by.
EXTRA_OF: dict[str, str] = {
    "transformers": "lm",
    "tokenizers": "lm",
    "peft": "lm",
    "accelerate": "distributed",
    "huggingface_hub": "hub",
    "matplotlib": "plots",
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "imageio": "video",
    "imageio_ffmpeg": "video",
    "PIL": "video",
    "ray": "ray",
}
PIP_NAME: dict[str, str] = {"imageio_ffmpeg": "imageio-ffmpeg", "PIL": "pillow"}
# What each extra enables, as the subject of the message ("{purpose} needs {package}, ...").
PURPOSE: dict[str, str] = {
    "lm": "the language-model tier",
    "distributed": "distributed training",
    "hub": "pushing to the Hugging Face Hub",
    "plots": "plotting",
    "tensorboard": "TensorBoard logging",
    "wandb": "W&B logging",
    "video": "video recording",
    "ray": "the 'ray' sweep backend",
}


class MissingExtra(ModuleNotFoundError, RuntimeError):
    """An optional package is not installed; the message is one line naming the pip command.

    A ``ModuleNotFoundError`` (so ``except ImportError`` catches it) and, as these errors used to be,
    a ``RuntimeError``.
    """

    def __init__(self, message: str = "", name: str | None = None, extra: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra


def install_command(extra: str) -> str:
    return f"pip install 'rlcode[{extra}]'"


def missing_extra(
    module: str, extra: str | None = None, purpose: str | None = None, package: str | None = None
) -> MissingExtra:
    """The error for ``module`` (such as ``"transformers"``) not being installed.

    ``package`` is the name the message gives it (default: the pip name of its top-level module).
    """
    root = module.partition(".")[0]
    extra = extra or EXTRA_OF[root]
    purpose = purpose or PURPOSE.get(extra, f"the '{extra}' extra")
    package = package or PIP_NAME.get(root, root)
    message = f"{purpose} needs {package}, which is not installed; install it with: {install_command(extra)}"
    return MissingExtra(message, name=root, extra=extra)


def _is_missing(error: ImportError, module: str) -> bool:
    """Whether ``error`` says that ``module`` itself (not one of its own dependencies) is absent."""
    name = getattr(error, "name", None)
    return isinstance(error, ModuleNotFoundError) and name is not None and \
        name.partition(".")[0] == module.partition(".")[0]


def require(module: str, extra: str | None = None, purpose: str | None = None) -> ModuleType:
    """Import and return ``module``; if it is not installed, raise ``MissingExtra`` naming the extra.

    ``extra`` defaults to ``EXTRA_OF`` of the top-level name; ``purpose`` to that extra's ``PURPOSE``.
    An ImportError raised inside an installed package (a broken install) propagates unchanged.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if isinstance(error, MissingExtra) or not _is_missing(error, module):
            raise
        raise missing_extra(module, extra, purpose) from None


def as_missing_extra(error: BaseException) -> MissingExtra | None:
    """``error`` as a ``MissingExtra`` when it is an ImportError of a known optional package, else None."""
    if isinstance(error, MissingExtra):
        return error
    name = getattr(error, "name", None)
    if isinstance(error, ModuleNotFoundError) and name and name.partition(".")[0] in EXTRA_OF:
        return missing_extra(name)
    return None
