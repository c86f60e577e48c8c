"""The values a plan is made of: a rendered file, a live file, what is live. They are the engine's
(``hostctl/engine/core/plan.py``: a server plans a rollback itself), so the control side and the engine
share one type for each."""

from hostctl.engine.core.plan import Actual, Kind, LiveFile, RenderedFile  # noqa: F401
