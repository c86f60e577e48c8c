"""Vetting decisions with a stand-in for `nginx -t` (the real one is exercised in tests/integration)."""

from __future__ import annotations

from typing import Iterator, Mapping

import pytest

from hostctl.engine import pipeline, probe
from hostctl.engine.nginx import CheckResult
from hostctl.engine.vetting import vet
from hostctl.errors import HostctlError
from hostctl.plan.manifest import Manifest
from tests.harness import Sandbox


@pytest.fixture
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox()
    for name, domain in (("a", "a.example"), ("b", "bad.example"), ("c", "x1.example"), ("d", "x2.example")):
        sandbox.write_customer(name, {"apps": {"web": sandbox.echo_app([domain], probe={"path": "/health", "status": 204})}})
    yield sandbox
    sandbox.cleanup()


class FakeNginx:
    """Fails a set containing 'bad.example', or both x1 and x2 (an interaction), or everything."""

    def __init__(self, always_fail: bool = False):
        self.always_fail = always_fail
        self.calls: list[int] = []

    def __call__(self, blocks: Mapping[str, str]) -> CheckResult:
        self.calls.append(len(blocks))
        text = "".join(blocks.values())
        if self.always_fail:
            return CheckResult(False, "nginx: [emerg] 1#1: broken everywhere")
        if "bad.example" in text:
            return CheckResult(False, "2026/01/01 00:00:00 [emerg] 1#1: bad name in b_web.conf:4\nnginx: test failed")
        if "x1.example" in text and "x2.example" in text:
            return CheckResult(False, "2026/01/01 00:00:00 [emerg] 1#1: x1 and x2 clash")
        return CheckResult(True, "")


def test_culprit_found_interaction_held_back_others_go_ahead(box: Sandbox) -> None:
    prepared = pipeline.prepare(box.inventory, host_checks=False)
    check = FakeNginx()
    plan, rejections = vet(prepared, Manifest(), check)
    assert {c.customer for c in plan.changes} == {"a", "c"}  # of the clashing pair, the first is admitted
    clash = "nginx -t fails with this customer's new server blocks among the others: x1 and x2 clash"
    assert sorted((r.customer, r.reason) for r in rejections) == [("b", "nginx -t: bad name in b_web.conf:4"), ("d", clash)]
    assert all(r.file.endswith(f"/{r.customer}_web.conf") for r in rejections)
    assert check.calls[0] == 4  # the whole set first, in one call


def test_last_known_good_failing_writes_nothing(box: Sandbox) -> None:
    prepared = pipeline.prepare(box.inventory, host_checks=False)
    with pytest.raises(HostctlError, match="nginx -t fails even with every customer's last-known-good server blocks"):
        vet(prepared, Manifest(), FakeNginx(always_fail=True))


def test_one_check_when_the_set_passes(box: Sandbox) -> None:
    (box.inventory / "customers" / "b.yaml").unlink()
    (box.inventory / "customers" / "d.yaml").unlink()
    prepared = pipeline.prepare(box.inventory, host_checks=False)
    check = FakeNginx()
    plan, rejections = vet(prepared, Manifest(), check)
    assert rejections == [] and plan == prepared.plan and check.calls == [2]


def test_probe_targets_and_address(box: Sandbox) -> None:
    prepared = pipeline.prepare(box.inventory, host_checks=False)
    targets = probe.targets(prepared.inventory, ["a", "c"])
    assert [(t.customer, t.host, t.path, t.status, t.timeout) for t in targets] == [
        ("a", "a.example", "/health", 204, 5.0), ("c", "x1.example", "/health", 204, 5.0)]
    assert probe.host_header("*.acme.example") == "probe.acme.example"
    assert probe.address("8080") == ("127.0.0.1", 8080)
    assert probe.address("0.0.0.0:80") == ("127.0.0.1", 80)
    assert probe.address("[::1]:8443") == ("::1", 8443)
    assert probe.address("10.1.2.3:81") == ("10.1.2.3", 81)


def test_running_out_of_file_descriptors_blames_nobody(box: Sandbox) -> None:
    prepared = pipeline.prepare(box.inventory, host_checks=False)

    def check(blocks: Mapping[str, str]) -> CheckResult:
        return CheckResult(False, 'nginx: [emerg] open() "/x/a.access.log" failed (24: Too many open files)')

    with pytest.raises(HostctlError, match="nginx -t ran out of file descriptors"):
        vet(prepared, Manifest(), check)
