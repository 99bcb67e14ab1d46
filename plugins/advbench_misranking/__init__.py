"""advbench built-in plugin (misranking): work in progress."""

__version__ = "0.1.0"
