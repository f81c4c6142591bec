"""Reusable test suites (as ``optuna.testing``): strategies on a cheap synthetic objective with a known optimum."""
