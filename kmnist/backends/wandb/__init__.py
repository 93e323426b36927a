"""The W&B engine: sweeps on W&B's server, their runs, offline runs and their sync."""
