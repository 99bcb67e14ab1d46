"""advbench built-in plugin (dgnet): work in progress."""

__version__ = "0.1.0"
