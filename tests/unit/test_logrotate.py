"""Log retention, the pure parts: the logrotate configuration rendered from hostctl.yaml's `logs:`,
and which directories root may rotate in (never one a customer can write)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostctl.engine import logrotate
from hostctl.inventory.schema import Settings
from hostctl.render import templates


def _settings(tmp_path: Path, **logs: object) -> Settings:
    return Settings.model_validate({"log_dir": str(tmp_path / "log"), "state_dir": str(tmp_path / "state"),
                                    "logs": logs}, strict=False)


def test_config_rotates_every_nginx_log_by_size_and_keeps_the_configured_number(tmp_path: Path) -> None:
    settings = _settings(tmp_path, max_size="5M", keep=7, max_age=30)
    dirs = [str(tmp_path / "log" / "globex"), str(tmp_path / "log" / "acme")]
    text = logrotate.render(settings, templates.environment(), logrotate.patterns(settings, dirs, serve=False))
    head, _, body = text.partition(" {\n")
    assert head.splitlines()[-1].split() == [f'"{tmp_path}/log/acme/*.access.log"', f'"{tmp_path}/log/acme/*.error.log"',
                                             f'"{tmp_path}/log/globex/*.access.log"', f'"{tmp_path}/log/globex/*.error.log"']
    lines = [line.strip() for line in body.splitlines()]
    assert f"size {5 << 20}" in lines and "rotate 7" in lines and "maxage 30" in lines
    # no signal, no new file created by root: the writers keep their descriptor
    assert "copytruncate" in lines and not any(line.startswith(("postrotate", "create", "su ")) for line in lines)


def test_serve_also_rotates_its_emperor_and_nginx_main_logs(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    found = logrotate.patterns(settings, [], serve=True)
    assert found == [f'"{tmp_path}/log/emperor.log"', f'"{tmp_path}/log/nginx.error.log"']
    text = logrotate.render(settings, templates.environment(), found)
    assert "maxage" not in text and f"size {10 << 20}" in text and "rotate 5" in text


def test_nothing_to_rotate_renders_no_stanza(tmp_path: Path) -> None:
    text = logrotate.render(_settings(tmp_path), templates.environment(), [])
    assert "{" not in text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown a directory")
def test_as_root_only_root_owned_directories_that_no_one_else_may_write_are_rotated(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    log = tmp_path / "log"
    for name, mode, uid in (("ok", 0o750, 0), ("customer", 0o750, 65534), ("groupw", 0o770, 0), ("worldw", 0o757, 0)):
        (log / name).mkdir(parents=True)
        os.chown(log / name, uid, -1)
        os.chmod(log / name, mode)
    (log / "elsewhere").symlink_to(log / "ok")  # a symlink is never followed
    (log / "emperor.log").write_text("")  # files are not directories
    safe, refused = logrotate.safe_dirs(settings, as_root=True)
    assert safe == [str(log / "ok")]
    assert refused == [str(log / n) for n in ("customer", "groupw", "worldw")]
    # Not as root, logrotate has no more rights than the files' owner: every directory is fine.
    assert logrotate.safe_dirs(settings, as_root=False)[0] == [str(log / n) for n in ("customer", "groupw", "ok", "worldw")]


def test_a_quote_or_relative_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="logrotate"):
        logrotate.quote('/var/log/x"y')
    with pytest.raises(Exception, match="logrotate"):
        logrotate.quote("log/x")


def test_serve_says_a_rotation_failure_once_while_it_lasts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from hostctl.cli import serve

    monkeypatch.setattr(logrotate, "LOGROTATE", ("no-such-logrotate-binary",))
    inv = SimpleNamespace(settings=_settings(tmp_path))
    said: list[str] = []
    memory: set[str] = set()
    for _ in range(3):
        serve.rotate_logs(inv, templates.environment(), False, said.append, memory)
    assert said == ["serve: log rotation: logrotate was not found; install it (apt-get install logrotate)"]
