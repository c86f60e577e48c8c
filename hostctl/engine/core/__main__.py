"""Run the engine on this server: ``python3 hostctl-engine.pyz COMMAND`` (or ``python3 -m hostctl.engine.core``).

Commands:

- ``apply``: read a job (JSON, ``job.py``) on stdin, apply it, print the result as JSON;
- ``rollback [CUSTOMER]``: the same job on stdin gives paths and commands; put a kept generation back;
- ``challenge``: read ``{"webroot", "put": {token: authorization}, "remove": [token], "probe": {"listen", "domains"}}``,
  write or remove ACME HTTP-01 tokens (``tlsfiles.py``) and check that this server's nginx serves them;
- ``restore --state-dir DIR``: after a reboot, recreate runtime directories, cgroups and limits
  from the runtime records (``runtime.py``), customer by customer; exit 1 if any failed.

The exit status follows ``errors.py``'s table; ``apply`` and ``rollback`` also put it in the JSON.
"""

from __future__ import annotations

import json
import sys

from hostctl.engine.core import apply as apply_mod, runtime, tlsfiles
from hostctl.engine.core.errors import EXIT_FAILED, EXIT_OK, EngineError
from hostctl.engine.core.job import Job

USAGE = "usage: hostctl-engine apply | rollback [CUSTOMER] | challenge | restore --state-dir DIR"


def result_dict(result: apply_mod.Result) -> dict:
    plan = result.plan
    return {
        "changes": [[c.action, c.path, c.kind, c.customer, bool(c.drift), bool(c.mode_only)] for c in plan.changes],
        "messages": result.messages + result.notes,
        "rejections": [[r.customer, r.file, r.reason] for r in result.rejections],
        "cgroup_changes": [[c.action, c.path, c.before, c.after] for c in result.cgroup_changes],
        "created_users": result.created_users,
        "generation": result.generation,
    }


def _answer(data: dict) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if not argv:
        print(USAGE, file=sys.stderr)
        return EXIT_FAILED
    command, args = argv[0], argv[1:]
    if command == "restore":
        if len(args) != 2 or args[0] != "--state-dir":
            print(USAGE, file=sys.stderr)
            return EXIT_FAILED
        done = runtime.restore(args[1])
        for message in done.messages:
            print(f"hostctl-restore: {message}")
        for customer in done.customers:
            print(f"hostctl-restore: {customer}: directories, cgroup and limits in place")
        for customer, why in sorted(done.failed.items()):
            print(f"hostctl-restore: {customer}: FAILED: {why}", file=sys.stderr)
        print(f"hostctl-restore: {len(done.customers)} customer(s) restored, {len(done.failed)} failed")
        return EXIT_OK if done.ok else EXIT_FAILED
    if command == "challenge":
        return _challenge(json.loads(sys.stdin.buffer.read()))
    if command not in ("apply", "rollback"):
        print(USAGE, file=sys.stderr)
        return EXIT_FAILED
    try:
        job = Job.from_dict(json.loads(sys.stdin.buffer.read()))
        if command == "apply":
            answer = result_dict(apply_mod.execute(job))
        else:
            result, target = apply_mod.rollback(job, args[0] if args else None)
            answer = {**result_dict(result), "target": target}
    except EngineError as exc:
        _answer({"error": exc.message, "code": exc.code})
        return exc.code
    except (ValueError, KeyError, TypeError) as exc:
        _answer({"error": f"the job is not valid: {type(exc).__name__}: {exc}", "code": EXIT_FAILED})
        return EXIT_FAILED
    code = EXIT_FAILED if answer["rejections"] else EXIT_OK
    _answer({**answer, "code": code})
    return code


def _challenge(request: dict) -> int:
    """ACME HTTP-01 tokens in this server's webroot; with ``probe``, whether nginx here serves the first one."""
    put, remove = dict(request.get("put") or {}), list(request.get("remove") or ())
    try:
        tlsfiles.challenges(str(request["webroot"]), put, remove)
    except (tlsfiles.Untrusted, OSError, ValueError) as exc:
        _answer({"problem": f"the challenge directory cannot be used: {exc}", "code": EXIT_FAILED})
        return EXIT_FAILED
    probe = request.get("probe")
    problem = None
    if probe and put:
        token, expected = next(iter(put.items()))
        problem = tlsfiles.served(str(probe["listen"]), [str(d) for d in probe["domains"]], token, expected)
    _answer({"problem": problem, "code": EXIT_OK})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
