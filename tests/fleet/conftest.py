"""Fixtures of the fleet tier: the cached image, hostctl's wheel, booted guests, and the leftover check.

Every test module here is marked ``fleet`` (``make test-fleet``) and ``integration`` (so that a unit run, ``-m "not integration"``, never boots a VM). Guests
are module-scoped where the tests of a module build on one another's state, and
always stopped by their finalizers; the session ends by checking that no qemu of
this session is alive.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.fleet import vm
from tests.fleet.fleet import FIGURES, build_wheel
from tests.fleet.image import Image, get_image

HERE = Path(__file__).parent


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001 - pytest hook
    if FIGURES:
        terminalreporter.section("fleet figures (measured in this run)")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session", autouse=True)
def no_qemu_left() -> Iterator[None]:
    yield
    vm.stop_all()
    left = vm.leftover_qemus()
    assert not left, f"qemu processes of this session still alive after the fleet tests: {left}"


@pytest.fixture(scope="session")
def fleet_image() -> Image:
    if os.geteuid() != 0:
        pytest.fail("the fleet tests build a Debian image with mmdebstrap --mode=root: run them as root")
    started = time.monotonic()
    image = get_image(log=lambda line: sys.stderr.write(line + "\n"))
    if image.build_seconds is not None:
        FIGURES["image build"] = f"{image.build_seconds:.1f} s (mmdebstrap, customize, 2x mke2fs)"
    else:
        FIGURES["image build"] = f"cached ({image.directory.name}, {time.monotonic() - started:.1f} s to find)"
    return image


@pytest.fixture(scope="session")
def hostctl_wheel() -> Iterator[Path]:
    """A wheel of this checkout (the hostctl the guests run)."""
    with tempfile.TemporaryDirectory(prefix="fleet-wheel-") as tmp:
        yield build_wheel(Path(tmp))
