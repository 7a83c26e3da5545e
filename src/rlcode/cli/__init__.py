"""The ``rlcode`` command line: ``app`` (parser, ``train``, ``evaluate``, ``main``) and the commands it adds.

``tour``, ``plot_commands`` and ``sweep_commands`` add their commands here; each tier's own commands
stay in the tier (``rlcode.tabular.commands``, ``rlcode.rlhf.commands``). The parser module is
``app``, not ``main``: ``main`` is the function exported here for ``[project.scripts]``
(``rlcode = "rlcode.cli:main"``), and a submodule of the same name would replace it.
"""

from rlcode.cli.app import main

__all__ = ["main"]
