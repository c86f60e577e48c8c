"""The ini escaping against the real thing: env values written by hostctl, read back from a running app.

escape.py's rules (``%`` doubled, ``$(``/``@(`` through placeholders, ``%(``
refused) were found by experiment with Debian's uWSGI 2.0.21. This checks them
end to end: hand-picked nasty values plus a bounded hypothesis sample go into
one vassal's env, and the app (tests/apps/echo.py) returns its ``T_*``
variables from ``os.environ``: each must be exactly the inventory's value.
"""

from __future__ import annotations

from typing import Iterator

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from hostctl.inventory import values
from tests.harness import Sandbox, Server

pytestmark = pytest.mark.integration

NASTY = ["$(HOME)", "@(/etc/hostname)", "%%", "100%", "%$(X)", "%d %n %x %0", "%", "$", "@", "$(", "@(", "%@(x)",
         "a = b", "; not a comment", "# not a comment", "[uwsgi]", " leading space", "\ttab", "é€😀", "%%%", "%)(",
         "$(HOME", "{{ jinja }}", "'\"\\", "x=y=z", "%hc_dollar", "hc_at)"]
SAMPLES = 3
PER_SAMPLE = 30


def _valid(value: str) -> bool:
    try:
        values.env_value(value)
    except ValueError:
        return False
    return True


FRAGMENTS = ["$(", "@(", "%", "%%", ")", "(", "$", "@", " ", "=", ";", "#", "[", "]", "\t", "\\", "'", '"', "é", "x"]
env_value = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join),
).filter(_valid)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Sandbox, Server]]:
    box = Sandbox()
    server = None
    try:
        box.write_customer("esc", {"apps": {"web": box.echo_app(["esc.example"])}})
        box.hostctl("apply")
        server = Server(box)
        server.wait_json("esc.example")
        yield box, server
    finally:
        if server is not None:
            server.stop()
        box.cleanup()


def test_placeholder_syntax_is_refused_before_anything_is_written(served: tuple[Sandbox, Server]) -> None:
    box, _server = served
    before = box.snapshot()
    box.write_customer("esc", {"apps": {"web": box.echo_app(["esc.example"], env={"T_X": "%(socket)"})}})
    result = box.hostctl("apply", check=False)
    assert result.returncode == 1
    assert "esc: customers/esc.yaml:7: apps.web.env.T_X: '%(socket)' contains '%(', which uWSGI always expands as a placeholder" in result.stderr
    # esc is held back (nothing of it written; the quarantine record names it), nobody else changes
    unchanged = lambda files: {k: v for k, v in files.items() if not k.endswith(("esc.yaml", "quarantine.json"))}
    assert unchanged(box.snapshot()) == unchanged(before)


@settings(max_examples=SAMPLES, deadline=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(sample=st.lists(env_value, min_size=PER_SAMPLE, max_size=PER_SAMPLE))
def test_env_values_read_back_from_real_uwsgi(served: tuple[Sandbox, Server], sample: list[str]) -> None:
    box, server = served
    env = {f"T_{i}": value for i, value in enumerate(NASTY + sample)}
    env["T_NONCE"] = nonce = f"{len(env)}-{hash(tuple(sample))}"  # tells this sample's answer from the last one's
    path = box.inventory / "customers" / "esc.yaml"
    path.write_text(yaml.safe_dump({"apps": {"web": box.echo_app(["esc.example"], env=env)}}, allow_unicode=True))
    box.hostctl("apply")
    got = server.wait_json("esc.example", lambda d: d["env"].get("T_NONCE") == nonce, timeout=20)["env"]
    wrong = {k: (env[k], got.get(k)) for k in env if got.get(k) != env[k]}
    assert not wrong, f"values changed on the way through uWSGI (written, read back): {wrong}"
