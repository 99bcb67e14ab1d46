"""The user-facing error type, in a module of its own so that every layer can raise it.

Importable as :class:`advbench.api.AdvbenchError` (where plugins take it from).
"""

from __future__ import annotations

__all__ = ["AdvbenchError"]


class AdvbenchError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""
