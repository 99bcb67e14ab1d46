"""What the real loaders raise and warn: a :class:`DatasetError` names the problem, the path and the layout.

Every user-facing problem is a :class:`DatasetError` whose first line names the problem and the
path; the lines after it (at most a handful) show the layout the loader expected. Counts that
differ from the known release are a :class:`DatasetCountWarning`, never an error: a user may
well run on a subset on purpose.
"""

from __future__ import annotations

from advbench.api import AdvbenchError


class DatasetCountWarning(UserWarning):
    """A dataset folder holds other numbers of ids or images than the known release."""


class DatasetError(AdvbenchError):
    """A dataset cannot be loaded: one line naming the problem and the path, then the expected layout.

    ``problem`` is that first line without the dataset prefix, ``layout`` the lines shown after it.
    """

    def __init__(self, dataset: str, problem: str, layout: str = "") -> None:
        self.dataset = dataset
        self.problem = problem
        self.layout = layout
        message = f"{dataset}: {problem}"
        if layout:
            message += "\n  expected layout:\n" + "\n".join("    " + line for line in layout.splitlines())
        super().__init__(message)


class DatasetNotReady(DatasetError):
    """The source files are there but a preparation step (e.g. CUHK03 extraction) was not allowed."""
