"""``RaySettings``: the ``ray=`` argument of the Python API, ``--ray*`` on the CLI (no Ray import here)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cai_engine.errors import ConfigError

#: The Ray namespace of every actor a cai command starts (workers: ``cai-RUN-worker-I``, quota: ``cai-RUN-quota``).
NAMESPACE = "cai-engine"


class RaySettings(BaseModel):
    """How a command runs its items on Ray (``docs/scaling.md``)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description=(
        "Ray cluster to join: 'auto', 'ray://HOST:10001' or HOST:PORT. Default: $RAY_ADDRESS, else a local Ray "
        "started for the command (or the one this process already started)."))
    workers: int = Field(2, ge=1, description="Worker actors; each holds one replica of every model the command uses.")
    num_cpus_per_worker: float = Field(1.0, ge=0, description="CPUs Ray reserves per worker.")
    num_gpus_per_worker: float = Field(0.0, ge=0, description=(
        "GPUs Ray reserves per worker (a vLLM replica with tensor_parallel_size N needs N)."))
    batch_size: int = Field(16, ge=1, le=10_000, description=(
        "Items per batch sent to a worker. Records stream back as they finish; a worker that dies costs "
        "at most the items it had started and not yet returned."))
    max_batch_attempts: int = Field(4, ge=1, description=(
        "Tries per batch when its worker dies; the items of a batch that killed its worker this often are "
        "saved as failed records (rerun with --retry-failed)."))


def ray_settings(value: Any) -> RaySettings | None:
    """The API's ``ray=`` value: None/False (in process), True (defaults), a dict or a RaySettings."""
    if value is None or value is False:
        return None
    if value is True:
        return RaySettings()
    if isinstance(value, RaySettings):
        return value
    if isinstance(value, dict):
        try:
            return RaySettings.model_validate({k: v for k, v in value.items() if v is not None})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"ray: {where}: {first['msg']}") from None
    raise ConfigError(f"ray= takes True, a dict of RaySettings fields or a RaySettings, not {type(value).__name__}")

