"""Real OpenSSH servers for the multi-host tests: one sshd per simulated host.

``SshHosts`` generates a client key and, per host, a host key, an sshd_config
and a directory that stands for that host's file system paths. Every sshd runs
in the foreground (``-D``) on 127.0.0.1 and a free high port, in its own process
group; ``stop()`` kills the groups and checks that no sshd of ours is left.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil

from tests.harness import Sandbox, free_port, wait_for

SSHD = "/usr/sbin/sshd"


@dataclass
class SshHost:
    name: str
    port: int
    root: Path  # this host's directories live under here
    config: Path
    proc: subprocess.Popen | None = None

    def settings(self, **extra: object) -> dict:
        """The host's entry for hostctl.yaml's hosts: (key and known_hosts relative to the inventory)."""
        data = {
            "address": "127.0.0.1", "port": self.port, "user": "root",
            "key_file": "../ssh/client_key", "known_hosts": "../ssh/known_hosts",
            **{key: str(self.root / key.removesuffix("_dir")) for key in ("emperor_dir", "nginx_dir", "run_dir", "log_dir", "state_dir")},
            "nginx": {"test_command": "true", "reload_command": f"echo reload >> {self.root}/reloads"},
        }
        data.update(extra)
        return data

    def reloads(self) -> int:
        path = self.root / "reloads"
        return len(path.read_text().splitlines()) if path.exists() else 0


class SshHosts:
    """Start sshd servers under ``base`` (an inventory's parent directory, so ``../ssh`` is the key directory)."""

    def __init__(self, base: Path):
        self.base = base
        self.keys = base / "ssh"
        self.keys.mkdir(mode=0o700, exist_ok=True)
        self.client_key = self.keys / "client_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hostctl-test", "-f", str(self.client_key)], check=True)
        (self.keys / "authorized_keys").write_text((self.keys / "client_key.pub").read_text())
        (self.keys / "known_hosts").write_text("")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.hosts: dict[str, SshHost] = {}

    def start(self, name: str) -> SshHost:
        port = free_port()
        root = self.base / "hosts" / name
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        os.chmod(root.parent, 0o755)
        host_key = self.keys / f"host_{name}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        with open(self.keys / "known_hosts", "a") as fh:
            fh.write(f"[127.0.0.1]:{port} {(self.keys / f'host_{name}.pub').read_text().split(' ', 2)[0]} "
                     f"{(self.keys / f'host_{name}.pub').read_text().split(' ', 2)[1]}\n")
        config = self.keys / f"sshd_{name}.conf"
        config.write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {self.keys}/sshd_{name}.pid",
            f"AuthorizedKeysFile {self.keys}/authorized_keys", "StrictModes no", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "UseDNS no",
            "MaxStartups 100", "MaxSessions 100", "LogLevel ERROR", "Subsystem sftp internal-sftp", "",
        ]))
        host = SshHost(name, port, root, config)
        host.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=open(self.keys / f"sshd_{name}.log", "w"))
        self.hosts[name] = host
        wait_for(lambda: host.proc.poll() is None and _listening(port), timeout=10, what=f"sshd for {name} on port {port}")
        return host

    def stop_one(self, name: str) -> None:
        host = self.hosts[name]
        if host.proc and host.proc.poll() is None:
            os.killpg(host.proc.pid, signal.SIGTERM)
            host.proc.wait(timeout=10)

    def stop(self) -> None:
        for name in list(self.hosts):
            try:
                self.stop_one(name)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.hosts[name].proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while ours(self.keys) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = ours(self.keys)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not left, f"sshd processes left running: {left}"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def ours(keys: Path) -> list[int]:
    """sshd processes (listeners and per-connection children) started with a config under ``keys``."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if "sshd" in (proc.info["name"] or "") and (str(keys) in cmd or _child_of_ours(proc, keys)):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _child_of_ours(proc: psutil.Process, keys: Path) -> bool:
    try:
        return any(str(keys) in " ".join(p.cmdline()) for p in proc.parents())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


@contextmanager
def hosts_for(box: Sandbox) -> Iterator[SshHosts]:
    """sshd hosts living in ``box``: all stopped (and checked gone) and the box removed afterwards."""
    ssh = SshHosts(box.root)
    try:
        yield ssh
    finally:
        try:
            ssh.stop()  # asserts that no sshd of ours is left
        finally:
            box.cleanup()
