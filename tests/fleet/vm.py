"""Throw-away Debian 12 guests under QEMU for the fleet tests.

Each ``Guest`` boots a qcow2 overlay of a cached image (the image stays
pristine) with the image's own kernel, systemd as PID 1 and the pure cgroup v2
hierarchy. Its network is QEMU's user mode with ``restrict=on``: the guest
reaches nothing, and only SSH, HTTP and HTTPS are forwarded from free high ports
on 127.0.0.1. Every qemu started here is recorded by pid in ``RUNNING``;
``stop()`` ends it by that pid and removes the overlay, and an atexit/signal
safety net stops whatever is still recorded (a test that fails or is
interrupted). ``leftover_qemus()`` finds any qemu of this session still alive.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from tests.fleet.image import Image
from tests.harness import free_port

SESSION = f"hostctl-fleet-{os.getpid()}-{uuid.uuid4().hex[:6]}"  # in every qemu's -name, to find leftovers
RUNNING: dict[int, "Guest"] = {}  # qemu pid -> guest
_LOCK = threading.Lock()
CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.unified_cgroup_hierarchy=1 quiet"


def accelerator() -> list[str]:
    """Hardware KVM where the host has it (kvm_intel/kvm_amd); otherwise TCG. (This machine's /dev/kvm is a
    paravirtual nested KVM that cannot boot a stock kernel: see shared/reference/test-fleet.md.)"""
    if (Path("/sys/module/kvm_intel").exists() or Path("/sys/module/kvm_amd").exists()) and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _end(pid: int, grace: float = 20.0) -> None:
    """SIGTERM (QEMU closes its disks and exits: a power cut for the guest), then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        while _alive(pid):
            time.sleep(0.05)


def stop_all() -> None:
    """Safety net: stop every qemu this process started and still records."""
    with _LOCK:
        guests = list(RUNNING.values())
    for guest in guests:
        guest.stop()


def _on_signal(signum, frame):  # noqa: ANN001 - signal handler signature
    stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(stop_all)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def leftover_qemus() -> list[int]:
    """Pids of qemu processes of this session that are still alive."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and any(SESSION.encode() in a for a in argv) and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


class GuestError(AssertionError):
    pass


class Guest:
    """One QEMU guest on a throw-away overlay of ``image`` (``fresh`` or ``served``)."""

    def __init__(self, image: Image, name: str, kind: str = "served", memory_mb: int = 1536, cpus: int = 2):
        self.image = image
        self.name = name
        self.kind = kind
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{SESSION}-{name}-", dir="/var/tmp"))
        self.overlay = self.workdir / "overlay.qcow2"
        self.console = self.workdir / "console.log"
        self.key = self.workdir / "id_ed25519"
        shutil.copy(image.client_key, self.key)
        os.chmod(self.key, 0o600)
        self.known_hosts = self.workdir / "known_hosts"
        self.ssh_port, self.http_port, self.https_port = free_port(), free_port(), free_port()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.ssh_port} {image.host_key}\n")
        self.pid: int | None = None
        self.boots = 0
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(getattr(image, kind)), str(self.overlay)],
                       check=True, capture_output=True)

    # -- power -------------------------------------------------------------------------------------------------
    def power_on(self) -> None:
        """Start qemu on the overlay (not waiting for the guest: see ``wait_ssh``)."""
        assert self.pid is None, f"{self.name} is already running"
        pidfile = self.workdir / "qemu.pid"
        pidfile.unlink(missing_ok=True)
        fwd = (f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,hostfwd=tcp:127.0.0.1:{self.http_port}-:80,"
               f"hostfwd=tcp:127.0.0.1:{self.https_port}-:443")
        argv = ["qemu-system-x86_64", "-name", f"{SESSION}-{self.name}", "-machine", "q35", *accelerator(),
                "-smp", str(self.cpus), "-m", str(self.memory_mb), "-display", "none", "-nodefaults",
                "-serial", f"file:{self.console}" if self.boots == 0 else f"file:{self.workdir}/console.{self.boots}.log",
                "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd), "-append", CMDLINE,
                "-drive", f"file={self.overlay},if=virtio,format=qcow2,cache=unsafe",
                "-netdev", f"user,id=n0,restrict=on,{fwd}", "-device", "virtio-net-pci,netdev=n0",
                "-daemonize", "-pidfile", str(pidfile)]
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise GuestError(f"qemu for {self.name} failed to start: {done.stderr.strip()}")
        self.pid = int(pidfile.read_text())
        self.boots += 1
        with _LOCK:
            RUNNING[self.pid] = self

    def power_off(self) -> None:
        """Pull the plug: qemu exits without the guest shutting down."""
        if self.pid is None:
            return
        _end(self.pid)
        with _LOCK:
            RUNNING.pop(self.pid, None)
        self.pid = None

    def stop(self) -> None:
        """Power off and remove the overlay (idempotent)."""
        self.power_off()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- ssh ---------------------------------------------------------------------------------------------------
    def ssh_argv(self, connect_timeout: int = 10) -> list[str]:
        return ["ssh", "-q", "-i", str(self.key), "-p", str(self.ssh_port), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=6", "root@127.0.0.1"]

    def run(self, command: str, *, check: bool = True, input: bytes | str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run a shell command on the guest as root; output as text."""
        done = subprocess.run([*self.ssh_argv(), command], input=input, capture_output=True, timeout=timeout,
                              text=not isinstance(input, bytes))
        if isinstance(done.stdout, bytes):
            done = subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(errors="replace"),
                                               done.stderr.decode(errors="replace"))
        if check and done.returncode != 0:
            raise GuestError(f"{self.name}: `{command}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def put(self, local: Path, remote: str, mode: str = "0644") -> None:
        self.run(f"install -D -m {mode} /dev/stdin {shlex.quote(remote)}", input=Path(local).read_bytes())

    def boot_id(self) -> str | None:
        try:
            done = self.run("cat /proc/sys/kernel/random/boot_id", check=False, timeout=30)
        except subprocess.TimeoutExpired:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    def wait_ssh(self, timeout: float = 600, not_boot: str | None = None) -> float:
        """Wait until SSH answers (and, with ``not_boot``, the boot id differs); return the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.pid is not None and not _alive(self.pid):
                raise GuestError(f"qemu of {self.name} exited; console:\n{self.console_tail()}")
            current = self.boot_id()
            if current and current != not_boot:
                return time.monotonic() - started
            time.sleep(1)
        raise GuestError(f"{self.name}: no SSH after {timeout} s; console:\n{self.console_tail()}")

    def wait_system(self, timeout: float = 300) -> str:
        """Wait until systemd has finished starting (running or degraded); return that state."""
        done = self.run(f"timeout {int(timeout)} systemctl is-system-running --wait", check=False, timeout=timeout + 30)
        return done.stdout.strip()

    def reboot(self, timeout: float = 600) -> float:
        """``systemctl reboot`` in the guest; return the seconds until SSH answers from the new boot."""
        before = self.boot_id()
        started = time.monotonic()
        self.run("systemctl reboot", check=False, timeout=30)
        self.wait_ssh(timeout, not_boot=before)
        return time.monotonic() - started

    def console_tail(self, lines: int = 40) -> str:
        logs = sorted(self.workdir.glob("console*.log"), key=lambda p: p.stat().st_mtime)
        if not logs:
            return "(no console log)"
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])

    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def __repr__(self) -> str:
        return f"Guest({self.name}, ssh={self.ssh_port}, http={self.http_port}, pid={self.pid})"
