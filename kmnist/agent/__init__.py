"""The agent: the one loop that pulls trials from any `Sweep` and trains them, and GPU leasing."""
