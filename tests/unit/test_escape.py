"""The ini/nginx filters: what they write, and what they refuse."""

from __future__ import annotations

import pytest

from hostctl.render.escape import EscapeError, ini, nginx


@pytest.mark.parametrize(("value", "written"), [
    ("plain", "plain"),
    ("100%", "100%%"),
    ("%n%d", "%%n%%d"),
    ("$(HOME)", "%%(hc_dollar)(HOME)"),
    ("@(/etc/hostname)", "%%(hc_at)(/etc/hostname)"),
    ("%$(X)", "%%%%(hc_dollar)(X)"),
    ("a ; b # c { }", "a ; b # c { }"),
    ("$ @ ( )", "$ @ ( )"),
    ("\ttab lead", "\ttab lead"),
])
def test_ini_escapes(value: str, written: str) -> None:
    assert ini(value) == written


@pytest.mark.parametrize("value", ["a\nb = c", "a\rb", "nul\0", "%(socket)", "x%(y", "trailing ", "tab\t", "\x7f"])
def test_ini_refuses(value: str) -> None:
    with pytest.raises(EscapeError):
        ini(value)


@pytest.mark.parametrize("value", ["acme.example", "*.acme.example", "/srv/a-b/c_d.e", "127.0.0.1:8080", "[::1]:80"])
def test_nginx_accepts_tokens(value: str) -> None:
    assert nginx(value) == value


@pytest.mark.parametrize("value", ["a b", "a;b", "a{", "}", "$host", "'q'", '"q"', "a#b", "a\nb", ""])
def test_nginx_refuses_syntax(value: str) -> None:
    with pytest.raises(EscapeError):
        nginx(value)
