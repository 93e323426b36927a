"""The trainer wing: data, the parameter table, models, augmentation and the one training loop.

It never imports a backend, the agent or the command line (see ARCHITECTURE.md)."""
