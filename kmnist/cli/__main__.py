"""`python -m kmnist.cli`: the same as `kmnist-sweep`."""

from kmnist.cli.app import main

main()
