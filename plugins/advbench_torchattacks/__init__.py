"""advbench built-in plugin (torchattacks): work in progress."""

__version__ = "0.1.0"
