"""Pebble (Let's Encrypt's ACME test server) and pebble-challtestsrv (its mock DNS) on loopback high ports.

Pebble validates HTTP-01 challenges by connecting to port ``http_port`` of the
address challtestsrv gives for a domain (127.0.0.1 unless told otherwise), so
pointing ``http_port`` at nginx's plain-HTTP listener makes the rendered server
blocks answer the CA. Its own HTTPS uses a certificate from a private test CA
(``ca_bundle``). Both run in their own process groups and are killed on stop.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import urllib.request
from pathlib import Path

from tests.harness import free_port, wait_for
from tests.pki import CA


class Pebble:
    def __init__(self, workdir: Path, http_port: int):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.acme_port, self.mgmt_port, self.dns_port, self.chall_port = (free_port() for _ in range(4))
        ca = CA.create("pebble test CA")
        cert, key = ca.issue(["localhost", "127.0.0.1"])
        (workdir / "cert.pem").write_bytes(cert)
        (workdir / "key.pem").write_bytes(key)
        self.ca_bundle = workdir / "ca.pem"
        self.ca_bundle.write_bytes(ca.pem)
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.acme_port}", "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(workdir / "cert.pem"), "privateKey": str(workdir / "key.pem"),
            "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }}
        (workdir / "pebble.json").write_text(json.dumps(config))
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
        self.procs: list[subprocess.Popen] = []
        self.log = open(workdir / "pebble.log", "w")
        try:
            self.procs.append(subprocess.Popen(
                ["pebble-challtestsrv", "-management", f"127.0.0.1:{self.chall_port}", "-dns01", f"127.0.0.1:{self.dns_port}",
                 "-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True))
            self.procs.append(subprocess.Popen(
                ["pebble", "-config", str(workdir / "pebble.json"), "-dnsserver", f"127.0.0.1:{self.dns_port}", "-strict=false"],
                stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=workdir))
            self._context = ssl.create_default_context(cafile=str(self.ca_bundle))
            wait_for(lambda: self._get(f"https://127.0.0.1:{self.acme_port}/dir"), timeout=20, what="pebble to listen")
            wait_for(lambda: self._post_chall("set-default-ipv4", {"ip": "127.0.0.1"}) is None, timeout=20, what="challtestsrv")
        except BaseException:
            self.stop()
            raise

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    def _get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, context=self._context, timeout=5) as response:
            return response.read()

    def _post_chall(self, path: str, body: dict) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.chall_port}/{path}", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def root_pem(self) -> bytes:
        """The root that pebble's issued chains lead to (new on every start)."""
        return self._get(f"https://127.0.0.1:{self.mgmt_port}/roots/0")

    def resolve(self, host: str, address: str) -> None:
        """Make challtestsrv answer A queries for ``host`` with ``address``."""
        self._post_chall("add-a", {"host": host, "addresses": [address]})

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=10)
        self.log.close()
        assert all(proc.poll() is not None for proc in self.procs), "pebble or challtestsrv still running"
