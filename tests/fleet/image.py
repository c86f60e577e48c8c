"""The test fleet's machine image: a minimal Debian 12 built from Debian's packages, cached between runs.

``mmdebstrap --mode=root --variant=minbase`` installs the base packages into a
directory; a customize script configures it (static network through
systemd-networkd, an SSH key for root, a trimmed initrd, no apt timers, the
Python packages hostctl needs in /opt/hostctl) and keeps the .debs of nginx and
uWSGI in /var/cache/apt/archives with the package lists, so that an offline
``apt-get install nginx uwsgi-core uwsgi-plugin-python3`` (what ``hostctl
bootstrap`` runs) really installs them. ``mke2fs -d`` turns the directory into
two ext4 images without loop devices or mounts:

- ``fresh.raw``: nginx and uWSGI not installed (a new server for ``bootstrap``);
- ``served.raw``: the same, with those packages installed from the same .debs
  (a server that ``bootstrap`` has already provisioned with packages).

The cache key is a hash of the recipe (the customize script and build steps), the
package lists (bootstrap's among them) and hostctl's Python dependencies; a build
happens only when the key changes. Images of other keys are removed once unused for
two days (another checkout may still be booting them).
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from hostctl.targets import bootstrap

REPO = Path(__file__).resolve().parents[2]
CACHE_ROOT = Path(os.environ.get("HOSTCTL_FLEET_CACHE", "/var/cache/hostctl-fleet"))
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = (
    "linux-image-amd64", "systemd-sysv", "udev", "dbus", "openssh-server", "python3", "python3-venv",
    "curl", "iproute2", "ca-certificates", "procps", "initramfs-tools", "kmod", "psmisc",
)
# What `hostctl bootstrap` installs: cached in the image, installed only in served.raw (a change rebuilds the image).
SERVER_PACKAGES = bootstrap.PACKAGES
IMAGE_SIZE = "3G"
GUEST_VENV = "/opt/hostctl"  # hostctl's virtualenv on the guests (its dependencies are baked in)


@dataclass(frozen=True)
class Image:
    """A built image: its directory and the files the harness needs."""

    directory: Path
    build_seconds: float | None  # None: taken from the cache

    @property
    def fresh(self) -> Path:
        return self.directory / "fresh.raw"

    @property
    def served(self) -> Path:
        return self.directory / "served.raw"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def client_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def host_key(self) -> str:
        """The guests' SSH host key, "type base64" (every guest of this image has the same one)."""
        return " ".join((self.directory / "ssh_host_ed25519_key.pub").read_text().split()[:2])


def python_requirements() -> list[str]:
    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


def cache_key() -> str:
    """A hash of what goes into the image: the recipe (customize script, build steps) and the package lists."""
    digest = hashlib.sha256()
    for part in (CUSTOMIZE, inspect.getsource(build), inspect.getsource(install_server_packages)):
        digest.update(part.encode())
    digest.update(json.dumps([SUITE, MIRROR, BASE_PACKAGES, SERVER_PACKAGES, IMAGE_SIZE, GUEST_VENV,
                              python_requirements()]).encode())
    return digest.hexdigest()[:16]


def get_image(log=print) -> Image:
    """The cached image for the current key; built first (under a lock) when missing."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    key = cache_key()
    directory = CACHE_ROOT / f"image-{key}"
    with open(CACHE_ROOT / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / "done").exists():
            (directory / "done").touch()  # last used: see prune()
            return Image(directory, None)
        started = time.monotonic()
        build(directory, log)
        seconds = time.monotonic() - started
        (directory / "done").write_text(json.dumps({"build_seconds": round(seconds, 1)}) + "\n")
        prune(keep=directory)
        return Image(directory, seconds)


def prune(keep: Path, unused_for: float = 2 * 86400) -> None:
    """Remove images of other keys not used for ``unused_for`` seconds (another checkout may still boot them)."""
    for old in CACHE_ROOT.glob("image-*"):
        stamp = old / "done"
        if old != keep and (not stamp.exists() or time.time() - stamp.stat().st_mtime > unused_for):
            shutil.rmtree(old, ignore_errors=True)


def _run(argv: list[str], log, **kwargs) -> None:
    log("fleet image: " + " ".join(argv[:3]) + (" ..." if len(argv) > 3 else ""))
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")


CUSTOMIZE = r"""#!/bin/sh
# Runs on the host with the image's root directory as $1 (mmdebstrap customize hook).
set -eu
R="$1"
OUT="$2"
WHEELS="$3"
DEBS="$4"
# The packages bootstrap installs: download them into the image's apt cache, do not install them.
chroot "$R" apt-get install -y -qq --download-only --no-install-recommends {server_packages}
# Keep only those .debs in the image (the installed packages' .debs go to the host's cache by sync-out).
cp -n "$R"/var/cache/apt/archives/*.deb "$DEBS"/
keep=$(chroot "$R" apt-get install -s -q --no-install-recommends {server_packages} | sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1_\2_/p' | sed 's/:/%3a/')
mkdir -p "$OUT/keep"
for prefix in $keep; do cp "$R"/var/cache/apt/archives/"$prefix"*.deb "$OUT/keep/"; done
rm -f "$R"/var/cache/apt/archives/*.deb
cp "$OUT"/keep/*.deb "$R"/var/cache/apt/archives/
rm -rf "$OUT/keep"

echo fleet > "$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 fleet\n' > "$R/etc/hosts"
# No network outside the forwarded ports: a local resolver address makes apt fail fast instead of waiting on DNS.
rm -f "$R/etc/resolv.conf"
echo 'nameserver 127.0.0.1' > "$R/etc/resolv.conf"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > "$R/etc/fstab"
mkdir -p "$R/etc/systemd/network"
printf '[Match]\nName=eth0\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n' > "$R/etc/systemd/network/10-eth0.network"
chroot "$R" systemctl enable systemd-networkd.service
# Nothing that wakes up on its own and takes the dpkg lock or the CPU during a test.
for unit in apt-daily.timer apt-daily-upgrade.timer fstrim.timer e2scrub_all.timer man-db.timer \
            systemd-networkd-wait-online.service getty@tty1.service; do
  chroot "$R" systemctl mask "$unit" >/dev/null 2>&1 || true
done
mkdir -p -m 700 "$R/root/.ssh"
cp "$OUT/id_ed25519.pub" "$R/root/.ssh/authorized_keys"
chmod 600 "$R/root/.ssh/authorized_keys"
printf 'UseDNS no\nPermitRootLogin prohibit-password\nMaxStartups 100\nMaxSessions 100\n' > "$R/etc/ssh/sshd_config.d/fleet.conf"
cp "$R/etc/ssh/ssh_host_ed25519_key.pub" "$OUT/"
# A small initrd: the guest boots from virtio with ext4 only.
printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\n' >> "$R/etc/initramfs-tools/modules"
sed -i 's/^MODULES=.*/MODULES=list/' "$R/etc/initramfs-tools/initramfs.conf"
chroot "$R" update-initramfs -u -k all >/dev/null
cp "$R"/boot/vmlinuz-* "$OUT/vmlinuz"
cp "$R"/boot/initrd.img-* "$OUT/initrd.img"
# hostctl's Python dependencies in its virtualenv (hostctl itself is installed per test run, from a wheel).
mkdir -p "$R/tmp/wheels"
cp "$WHEELS"/* "$R/tmp/wheels/"
chroot "$R" python3 -m venv {venv}
chroot "$R" {venv}/bin/pip install -q --no-index --find-links /tmp/wheels -r /tmp/wheels/requirements.txt
rm -rf "$R/tmp/wheels"
"""


def build(directory: Path, log) -> None:
    """Build the image into ``directory`` (replaced): mmdebstrap, customize, mke2fs twice."""
    for tool in ("mmdebstrap", "mke2fs", "qemu-img", "ssh-keygen"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            raise RuntimeError(f"{tool} is missing: `make deps` installs the fleet's tools (mmdebstrap, e2fsprogs, qemu-utils)")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    debs = CACHE_ROOT / "debs"
    debs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fleet-build-", dir=CACHE_ROOT) as tmp:
        work = Path(tmp)
        rootfs = work / "rootfs"
        wheels = work / "wheels"
        (wheels / "requirements.txt").parent.mkdir()
        (wheels / "requirements.txt").write_text("\n".join(python_requirements()) + "\n")
        _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), "-r", str(wheels / "requirements.txt")], log)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hostctl-fleet", "-f", str(directory / "id_ed25519")], log)
        script = work / "customize.sh"
        script.write_text(CUSTOMIZE.format(server_packages=" ".join(SERVER_PACKAGES), venv=GUEST_VENV))
        _run(["mmdebstrap", "--mode=root", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
              "--aptopt=Acquire::Check-Valid-Until \"false\"", "--skip=cleanup/apt/lists", "--skip=cleanup/apt/cache",
              "--skip=essential/unlink",
              f"--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives && cp -a {debs}/. \"$1\"/var/cache/apt/archives/",
              f"--customize-hook=sh {script} \"$1\" {directory} {wheels} {debs}",
              SUITE, str(rootfs), MIRROR], log)
        _run(["mke2fs", "-q", "-t", "ext4", "-L", "fleet", "-d", str(rootfs), str(directory / "fresh.raw"), IMAGE_SIZE], log)
        install_server_packages(rootfs, log)
        _run(["mke2fs", "-q", "-t", "ext4", "-L", "fleet", "-d", str(rootfs), str(directory / "served.raw"), IMAGE_SIZE], log)
        shutil.rmtree(rootfs)


def install_server_packages(rootfs: Path, log) -> None:
    """Install nginx and uWSGI in ``rootfs`` from its own apt cache (offline), starting no service."""
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    packages = " ".join(SERVER_PACKAGES)
    try:
        _run(["unshare", "--mount", "--propagation", "private", "sh", "-ec",
              f"mount -t proc proc {rootfs}/proc && mount -t sysfs sys {rootfs}/sys && "
              f"mount --rbind /dev {rootfs}/dev && "
              f"DEBIAN_FRONTEND=noninteractive chroot {rootfs} apt-get install -y -qq --no-download --no-install-recommends {packages}"],
             log)
    finally:
        policy.unlink()
    # Keep the .debs: bootstrap's `apt-get install` on a served guest finds every package installed anyway.
    leftovers = [p for p in (rootfs / "proc").iterdir()] + [p for p in (rootfs / "sys").iterdir()]
    if leftovers:
        raise RuntimeError(f"{rootfs}/proc or /sys still has content after the chroot install: {leftovers[:3]}")


if __name__ == "__main__":
    image = get_image()
    print(image.directory, image.build_seconds)
