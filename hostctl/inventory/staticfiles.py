"""Where an app's ``static:`` directories may be, and from where nginx checks their symlinks: pure.

nginx serves a ``static:`` location itself, as its worker user, which can read
much more than the customer can (other customers' files that nginx's group may
read, the inventory). So a static target must lie under a root the operator
allows: the app's own ``chdir`` (or ``root`` for a released app), or one of ``isolation.static_roots``. Inside
it, everything is the customer's, including symlinks it plants; nginx's
``disable_symlinks if_not_owner from=<root>`` refuses (403) any path whose
components below the root include a symlink owned by someone other than its
target's owner, so ``static/leak -> /srv/other/secret`` is never followed,
while the customer's links to its own files still work.
"""

from __future__ import annotations

from typing import Iterable


def under(path: str, root: str) -> bool:
    """Whether the (absolute, normalised) ``path`` is ``root`` or inside it."""
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root if root == "/" else root + "/")


def allowed_root(target: str, app_dirs: Iterable[str | None], roots: Iterable[str]) -> str | None:
    """The deepest allowed root that holds ``target``: the app's own directory (``chdir``, or ``root`` of a
    released app) or a static root; None if none does."""
    candidates = [r for r in [d for d in app_dirs if d] + list(roots) if under(target, r)]
    return max(candidates, key=len) if candidates else None
