"""The command line, `kmnist-sweep`: thin click commands over the library."""

from kmnist.cli.app import main

__all__ = ["main"]
