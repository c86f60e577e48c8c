"""Hostile tenant: `hostctl release --source DIR` (root) packs nothing through a link the customer swaps in.

On a one-server host the operator may release a customer's code from a directory the
customer can write (its checkout in its home). hostctl, as root, packs that directory;
the archive is unpacked in the customer's release, which the customer reads. Packing
by path (``tarfile.add``: ``lstat``, then ``listdir``/``open`` of the same path) lets the
customer swap a directory for a symlink in between: root then lists and reads what the
link points to, and the customer gets root's files in its release.

The customer (its own Unix user) flips 20 directories of its source between a real
directory and a symlink to a root-only canary directory, while root packs the source
for up to 30 s. The canary must never be in an archive (each attempt may fail, naming
the entry that changed, or succeed with the customer's own files).
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Iterator

import pytest

from hostctl.engine.core import users
from hostctl.errors import HostctlError
from hostctl.targets import apps
from tests.hostile import Canary

pytestmark = pytest.mark.integration

DIRS = 20
FLIP = r"""
import os, sys, time
src, target, seconds, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    os.makedirs(os.path.join(src, "d%02d" % i), exist_ok=True)
    open(os.path.join(src, "d%02d" % i, "mine.txt"), "w").write("the customer's own file\n")
end = time.time() + seconds
while time.time() < end:
    for i in range(n):
        d = os.path.join(src, "d%02d" % i)
        try:
            os.rename(d, d + ".real")
            os.symlink(target, d)
            os.unlink(d)
            os.rename(d + ".real", d)
        except OSError:
            pass
"""


@pytest.fixture
def setup() -> Iterator[tuple[str, str, Canary]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (packs as root what a customer's Unix user writes)")
    user = f"hcr{secrets.token_hex(3)}"
    users.create([user], None, 20000, 29999)
    canary = Canary()
    src = tempfile.mkdtemp(prefix="hostile-source-", dir="/var/tmp")
    os.chmod(src, 0o755)
    shutil.chown(src, user, user)
    try:
        yield user, src, canary
    finally:
        subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(src, ignore_errors=True)
        canary.cleanup()


def test_packing_a_customers_source_never_follows_a_swapped_in_link(setup: tuple[str, str, Canary]) -> None:
    user, src, canary = setup
    flipper = subprocess.Popen(["runuser", "-u", user, "--", sys.executable, "-c", FLIP, src, str(canary.dir), "40", str(DIRS)],
                               start_new_session=True)
    packed = refused = 0
    leaked: list[str] = []
    try:
        time.sleep(1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not leaked:
            try:
                data, _ = apps.package(src)
            except HostctlError as exc:
                refused += 1
                assert "changed while" in str(exc) or "is not" in str(exc), exc
                continue
            except FileNotFoundError:  # the old code, racing the customer's renames
                refused += 1
                continue
            packed += 1
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        content = tar.extractfile(member).read()
                        if canary.secret.encode() in content:
                            leaked.append(member.name)
                        else:
                            assert content == b"the customer's own file\n", (member.name, content)
    finally:
        os.killpg(flipper.pid, signal.SIGKILL)  # the group this test started: runuser and the customer's flipper
        flipper.wait()
        time.sleep(0.2)
    assert not leaked, (f"root packed its root-only canary into the customer's release archive as {leaked} "
                        f"(after {packed} archives, {refused} refused)")
    assert packed > 0, f"no archive was made in 30 s ({refused} refused): the customer's own files must still pack"
