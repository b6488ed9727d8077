"""Fixtures of the Pulumi program tests (the harness lives in pulumi_harness.py)."""

from pulumi_harness import any_run, dev_run, fresh_run, prod_run

__all__ = ["any_run", "dev_run", "fresh_run", "prod_run"]
