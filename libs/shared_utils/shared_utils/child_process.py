"""Starting Python child processes that import what their parent imports."""

from __future__ import annotations

import os
import sys


def inherited_pythonpath() -> str:
    """This interpreter's ``sys.path`` as an absolute ``PYTHONPATH`` for a child process.

    Absolute, because a Pants test sandbox puts relative source roots on ``sys.path`` and a child
    often runs in another working directory. Used to start a worker or task-api in tests, the same
    code the test imports, without packaging it first.
    """
    return os.pathsep.join(os.path.abspath(entry) for entry in sys.path if entry)
