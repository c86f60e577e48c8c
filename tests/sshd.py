"""Real OpenSSH servers for the multi-host tests: one sshd per simulated host.

``SshHosts`` generates a client key and, per host, a host key, an sshd_config
and a directory that stands for that host's file system paths. Every sshd runs
in the foreground (``-D``) on 127.0.0.1 and a free high port, in its own process
group; ``stop()`` kills the groups and checks that no sshd of ours is left.

``login_user`` adds a throw-away non-root account that may log in with the same
key (random name, removed at teardown), optionally with sudo through a drop-in
in /etc/sudoers.d (checked with ``visudo -c``, removed at teardown).
"""

from __future__ import annotations

import os
import pwd
import secrets
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
SUDOERS_D = Path("/etc/sudoers.d")
SUDO_RULES = {"nopasswd": "ALL=(ALL:ALL) NOPASSWD: ALL", "password": "ALL=(ALL:ALL) ALL"}


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
        # sshd reads a user's keys as that user: a copy any account can read, for ``login_user``
        public = base / "ssh-users"
        public.mkdir(mode=0o755, exist_ok=True)
        os.chmod(public, 0o755)
        self.public_keys = public / "authorized_keys"
        self.public_keys.write_text((self.keys / "client_key.pub").read_text())
        os.chmod(self.public_keys, 0o644)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.hosts: dict[str, SshHost] = {}
        self.users: list[str] = []  # throw-away accounts made by login_user
        self.sudoers: list[Path] = []  # their drop-ins

    def login_user(self, sudo: str | None = None) -> str:
        """A new non-root account (random name) that logs in with the client key; ``sudo``: None (no sudo),
        "nopasswd" (passwordless sudo to root) or "password" (sudo that asks for a password it never gets)."""
        name = f"hcb-{secrets.token_hex(4)}"
        home = self.base / "home" / name
        home.parent.mkdir(mode=0o755, exist_ok=True)
        os.chmod(home.parent, 0o755)
        # '*': no password, yet not locked ('!'), which sshd without PAM would refuse
        subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                        "--password", "*", "--user-group", name], check=True, capture_output=True)
        self.users.append(name)
        home.mkdir(mode=0o700)
        os.chown(home, pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid)
        if sudo is not None:
            self.sudoers.append(self._sudoers(name, SUDO_RULES[sudo]))
        return name

    def _sudoers(self, name: str, rule: str) -> Path:
        """Install a sudoers drop-in for ``name``: written beside as a dotted file (sudo skips those), checked, renamed."""
        target = SUDOERS_D / f"hostctl-test-{name}"
        tmp = SUDOERS_D / f".hostctl-test-{name}.tmp"
        tmp.write_text(f"{name} {rule}\n")
        os.chmod(tmp, 0o440)
        try:
            subprocess.run(["visudo", "-c", "-q", "-f", str(tmp)], check=True, capture_output=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        check = subprocess.run(["visudo", "-c", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            target.unlink()
            raise AssertionError(f"sudoers invalid with {target}: {check.stdout}{check.stderr}")
        return target

    def remove_users(self) -> None:
        """Remove the drop-ins and the accounts (and any process left running as one: only ours run as them)."""
        for path in self.sudoers:
            path.unlink(missing_ok=True)
        self.sudoers.clear()
        for name in self.users:
            try:
                uid = pwd.getpwnam(name).pw_uid
            except KeyError:
                continue
            left = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and uid in p.info["uids"][:2]]
            for proc in left:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(left, timeout=10)
            subprocess.run(["userdel", name], check=True, capture_output=True)
        self.users.clear()
        check = subprocess.run(["visudo", "-c", "-q"], capture_output=True, text=True)
        assert check.returncode == 0, f"sudoers invalid after teardown: {check.stdout}{check.stderr}"

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
            f"AuthorizedKeysFile {self.keys}/authorized_keys {self.public_keys}", "StrictModes no", "PermitRootLogin prohibit-password",
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
        try:
            self._stop_sshd()
        finally:
            self.remove_users()

    def _stop_sshd(self) -> None:
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
