"""kmnist-sweep: hyperparameter search on Kuzushiji-MNIST driven by W&B sweep YAML."""

__version__ = "0.1.0"
