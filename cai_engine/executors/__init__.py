"""Where a pipeline's items run.

* in process, on the command's event loop (the default): :class:`~cai_engine.executors.job.LocalExecutor`,
  i.e. :func:`cai_engine.engine.runner.run_items`;
* on Ray workers (``--ray``; the optional ``cai-engine[ray]`` extra, imported only when used):
  :class:`~cai_engine.executors.ray_driver.RayExecutor`.

Either way the driver alone computes the pending items and their ids and writes OUT, so resume,
the OUT lock, merge and exports do not depend on where items ran. A pipeline describes its work as
a :class:`~cai_engine.executors.job.Job` (model configs + the per-item function), which can travel
to another process. ``docs/scaling.md`` is the user-facing account.
"""

from typing import Any

from cai_engine.executors.job import Executor, Job, LocalExecutor
from cai_engine.executors.settings import RaySettings, ray_settings

__all__ = ["Executor", "Job", "LocalExecutor", "RaySettings", "executor_for", "ray_settings"]


def executor_for(value: Any) -> Any:
    """The executor for the API's ``ray=`` value: None (in process) or a
    :class:`~cai_engine.executors.ray_driver.RayExecutor`; says how to install Ray when it is missing."""
    settings = ray_settings(value)
    if settings is None:
        return None
    from cai_engine.executors.ray_driver import RayExecutor, import_ray

    import_ray()  # one line saying how to install it, before any work
    return RayExecutor(settings)
