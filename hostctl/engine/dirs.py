"""A customer's private /tmp: the mount points its runtime record's directories include.

The directories themselves (socket, log, private /tmp) come from ``apply.runtime_records``,
the one source that apply, deploy, `limits --apply` and the boot-time ``restore`` make
(``engine/core/runtime.py``).
"""

from __future__ import annotations

from hostctl.inventory import privatetmp
from hostctl.inventory.schema import Settings
from hostctl.inventory.spec import CustomerSpec


def tmp_keep(settings: Settings, per_customer: bool, customer: CustomerSpec) -> tuple[str, ...] | None:
    """The mount points of ``customer``'s private /tmp (None: it has none; vassals as the invoker never do)."""
    if not per_customer:
        return None
    return privatetmp.customer_keep([a.config for a in customer.apps], settings.run_dir, settings.log_dir,
                                    settings.emperor_dir)
