"""Planning is pure: rendered files + live state in, a Plan value out."""

from __future__ import annotations

from hostctl.plan.manifest import Entry, Manifest, sha256
from hostctl.plan.diff import diff, make_plan, redact, render_plan
from hostctl.plan.files import RenderedFile
from hostctl.plan.files import Actual, LiveFile

V = "/e/acme_web.ini"
N = "/n/acme_web.conf"


def rendered(path: str, content: str, kind: str = "vassal") -> RenderedFile:
    return RenderedFile(path, content, kind, "acme", "web", 0o640 if kind == "vassal" else 0o644)


def entry(content: str, kind: str = "vassal") -> Entry:
    return Entry(sha256(content), kind, "acme", "web")


def test_new_files_are_created() -> None:
    plan = make_plan({V: rendered(V, "a\n"), N: rendered(N, "b\n", "nginx")}, Actual(Manifest(), {V: LiveFile(None), N: LiveFile(None)}))
    assert [(c.action, c.path) for c in plan.changes] == [("create", V), ("create", N)]  # sorted by path
    assert plan.nginx_changed and plan.summary() == "Plan: 2 to add, 0 to change, 0 to remove."
    assert set(plan.manifest.files) == {V, N}


def test_unchanged_files_are_left_alone() -> None:
    actual = Actual(Manifest({V: entry("a\n")}), {V: LiveFile(b"a\n", 0o640)})
    plan = make_plan({V: rendered(V, "a\n")}, actual)
    assert plan.empty and plan.unchanged == 1
    assert plan.summary() == "No changes. The live files match the inventory."


def test_changed_content_is_an_update_without_drift() -> None:
    actual = Actual(Manifest({V: entry("old\n")}), {V: LiveFile(b"old\n", 0o640)})
    [change] = make_plan({V: rendered(V, "new\n")}, actual).changes
    assert (change.action, change.before, change.after, change.drift) == ("update", "old\n", "new\n", False)


def test_hand_edit_is_drift() -> None:
    actual = Actual(Manifest({V: entry("ours\n")}), {V: LiveFile(b"edited by hand\n", 0o640)})
    [change] = make_plan({V: rendered(V, "ours\n")}, actual).changes
    assert change.action == "update" and change.drift
    assert "(drift: edited outside hostctl; apply overwrites it)" in render_plan(make_plan({V: rendered(V, "ours\n")}, actual))


def test_interrupted_apply_previous_content_is_not_drift() -> None:
    interrupted = Entry(sha256("new\n"), "vassal", "acme", "web", previous=sha256("old\n"))
    actual = Actual(Manifest({V: interrupted}), {V: LiveFile(b"old\n", 0o640)})
    [change] = make_plan({V: rendered(V, "new\n")}, actual).changes
    assert change.action == "update" and not change.drift


def test_file_hostctl_did_not_write_is_a_conflict() -> None:
    actual = Actual(Manifest(), {V: LiveFile(b"someone else's\n", 0o644)})
    plan = make_plan({V: rendered(V, "ours\n")}, actual)
    assert plan.changes == () and [c.path for c in plan.conflicts] == [V]


def test_identical_unmanaged_file_is_adopted() -> None:
    actual = Actual(Manifest(), {V: LiveFile(b"ours\n", 0o640)})
    plan = make_plan({V: rendered(V, "ours\n")}, actual)
    assert plan.empty and not plan.conflicts and V in plan.manifest.files


def test_departed_files_are_deleted_and_vanished_ones_forgotten() -> None:
    gone = "/e/gone_web.ini"
    actual = Actual(Manifest({V: entry("a\n"), gone: entry("g\n")}), {V: LiveFile(b"a\n", 0o640), gone: LiveFile(None)})
    plan = make_plan({}, actual)
    assert [(c.action, c.path) for c in plan.changes] == [("delete", V)]
    assert plan.manifest.files == {}


def test_mode_change_only() -> None:
    actual = Actual(Manifest({V: entry("a\n")}), {V: LiveFile(b"a\n", 0o644)})
    [change] = make_plan({V: rendered(V, "a\n")}, actual).changes
    assert change.mode_only and change.mode == 0o640


def test_directory_in_the_way_is_a_conflict() -> None:
    plan = make_plan({V: rendered(V, "a\n")}, Actual(Manifest(), {V: LiveFile(None, None, not_a_file=True)}))
    assert plan.conflicts and not plan.changes


def test_diffs_redact_env_values() -> None:
    before = "env = SECRET=hunter2\nprocesses = 1\n"
    after = "env = SECRET=swordfish\nprocesses = 2\n"
    actual = Actual(Manifest({V: entry(before)}), {V: LiveFile(before.encode(), 0o640)})
    [change] = make_plan({V: rendered(V, after)}, actual).changes
    text = diff(change)
    assert "hunter2" not in text and "swordfish" not in text
    assert "-processes = 1" in text and "+processes = 2" in text
    assert "(env values changed, not shown: SECRET)" in text
    assert redact("env = A=b=c\nx = 1\n") == "env = A=***\nx = 1\n"
    # a per-customer vassal also sets its env after the privilege drop, in hooks (vassal.ini.j2)
    before, after = (f"hook-as-user = !putenv:SECRET={v}\nif-reload =\nenv = SECRET={v}\nendif =\n" for v in ("hunter2", "swordfish"))
    actual = Actual(Manifest({V: entry(before)}), {V: LiveFile(before.encode(), 0o640)})
    [change] = make_plan({V: rendered(V, after)}, actual).changes
    text = diff(change)
    assert "hunter2" not in text and "swordfish" not in text and "(env values changed, not shown: SECRET)" in text


def test_intent_remembers_the_live_content_not_the_manifests() -> None:
    """Killed towards B (manifest: B, previous A; file still A), killed again before writing, then
    towards B again: the intent must still accept A, or the next plan calls the file drift."""
    from hostctl.engine.core.apply import intent as _intent

    old = Manifest({V: Entry(sha256("B\n"), "vassal", "acme", "web", previous=sha256("A\n"))})
    plan = make_plan({V: rendered(V, "B\n")}, Actual(old, {V: LiveFile(b"A\n", 0o640)}))
    intent = _intent(old, plan)
    assert intent.files[V].sha256 == sha256("B\n") and intent.files[V].accepts(sha256("A\n"))
    [change] = make_plan({V: rendered(V, "B\n")}, Actual(intent, {V: LiveFile(b"A\n", 0o640)})).changes
    assert not change.drift
