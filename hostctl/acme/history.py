"""Remember ACME orders between runs: ``state_dir/acme.json`` (read and written here only).

The pacing decisions in ``schedule.py`` need the recent orders (rate
windows) and the failures per certificate (backoff); this module turns that
``History`` into JSON and back.
"""

from __future__ import annotations

import datetime as dt
import json
import os

from hostctl.acme.schedule import Failure, History, Order
from hostctl.engine import fsops
from hostctl.errors import HostctlError
from hostctl.inventory.schema import Settings


def path(settings: Settings) -> str:
    return os.path.join(settings.state_dir, "acme.json")


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def load(settings: Settings) -> History:
    try:
        with open(path(settings), encoding="utf-8") as fh:
            data = json.load(fh)
        orders = tuple(Order(_time(o["at"]), o["name"], tuple(o["domains"]), bool(o["ok"]), o.get("kind", "issue"))
                       for o in data.get("orders", []))
        failures = {name: Failure(int(f["count"]), _time(f["last"]), str(f["error"])) for name, f in data.get("failures", {}).items()}
    except FileNotFoundError:
        return History()
    except (ValueError, KeyError, TypeError) as exc:
        raise HostctlError(f"{path(settings)} is damaged ({exc}); move it aside (hostctl then forgets past orders and backoffs)") from exc
    return History(orders, failures)


def save(settings: Settings, history: History) -> None:
    data = {
        "orders": [{"at": o.at.isoformat(), "name": o.name, "domains": list(o.domains), "ok": o.ok, "kind": o.kind} for o in history.orders],
        "failures": {name: {"count": f.count, "last": f.last.isoformat(), "error": f.error} for name, f in sorted(history.failures.items())},
    }
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    fsops.write_atomic(path(settings), (json.dumps(data, indent=1) + "\n").encode(), 0o600)
