"""User-facing errors.

Anything raised as :class:`CaiError` is printed by the CLI as one line (no traceback) and exits
non-zero, so its message must say what is wrong *and* how to fix it.
"""

from __future__ import annotations


class CaiError(Exception):
    """An error the user can fix; the message is shown as is."""


class ConfigError(CaiError):
    """A config or constitution file is malformed. Messages carry ``file:line:col``."""


class ModelError(CaiError):
    """A model spec cannot be resolved or a backend cannot start."""


class FatalBackendError(CaiError):
    """The backend refuses every request (bad key, unknown model): stop the run, keep what is done."""


class BudgetExceeded(CaiError):
    """``--max-cost`` was reached; finished records are saved."""
