"""Job types. Each built-in type is one module here; `load_job_types` imports them (and any
extra modules named in JOB_MODULES) so their `@job_type` decorators register them."""

from __future__ import annotations

import importlib

from service.jobs.registry import REGISTRY, JobRegistry, JobType, JobTypeDefaults, job_type
from service.queue.errors import PermanentJobError
from service.queue.job_context import JobContext

BUILTIN_MODULES: tuple[str, ...] = (
    "service.jobs.noop",
    "service.jobs.data_processing",
    "service.jobs.image_processing",
    "service.jobs.email_sending",
    "service.jobs.report_generation",
)

__all__ = [
    "REGISTRY",
    "JobContext",
    "JobRegistry",
    "JobType",
    "JobTypeDefaults",
    "PermanentJobError",
    "job_type",
    "load_job_types",
]


def load_job_types(extra_modules: tuple[str, ...] = ()) -> JobRegistry:
    """Import the built-in job modules and `extra_modules`; returns the filled registry."""
    for module in (*BUILTIN_MODULES, *extra_modules):
        importlib.import_module(module)
    return REGISTRY
