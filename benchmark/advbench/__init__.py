"""advbench: adversarial attacks on person re-identification, benchmarked.

Plugins import :data:`hookimpl` from here and the types of :mod:`advbench.api`.
"""

from advbench.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
