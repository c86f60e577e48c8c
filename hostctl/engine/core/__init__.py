"""The engine: every step that changes a server, written once, run where the files are.

``apply`` runs it in-process; ``deploy`` ships this package to each server as a
zip that the server's ``python3`` runs (``hostctl/shipping.py``), so both give
the same guarantees: one lock, compare-and-swap on the state the plan was made
from, users and the account rule (``accounts``, against this server's user
database), cgroups and limits, customer directories, server blocks held back
when another nginx server here serves their domain (``nginxdump``, ``nginx -T``)
and vetted with ``nginx -t`` (bisecting to quarantine only the customers that
break it), vassals, the Emperor poke, nginx reload, probes with per-customer
rollback, generations, the kill of what a departed customer left running and
``--purge`` (``stopping``), and the runtime record that ``restore`` rebuilds a
server from after a reboot.

May import: the Python standard library and ``hostctl.engine.core`` only (a test
enforces it). It is given data (a job, see ``job.py``) and never reads the
inventory, templates or anything of the control side.
"""
