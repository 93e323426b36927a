"""The Optuna engine: a sweep file as an Optuna study in a journal file, PostgreSQL or Redis."""
