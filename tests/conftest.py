"""Suite-wide isolation: a test that changes torch's process-wide thread count does not slow the next ones.

Policy-gradient training sets ``torch.set_num_threads(config.torch_threads)`` (one thread by default, for
exact resume), which would otherwise leave every later test, such as the real-model RLHF run, on one core.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
