"""Customer Unix users: created by the engine (``hostctl/engine/core/users.py``) on the server it runs on."""

from hostctl.engine.core.users import NO_HOME, NOLOGIN, missing, useradd_argv  # noqa: F401
