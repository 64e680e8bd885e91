"""The workflow's own evaluate_method.py command for one method, taken from a Snakemake dry run, with flags replaced.

A by-hand evaluation (a checkpoint the run did not train, another output folder) should answer exactly as the rule
would: same model section (with the run's quantization), instructions, engine, batch and seed. So the command comes
from the rule itself rather than being rebuilt:

    python -m snakemake --configfile $CONFIG [override.yaml] -n -p --forceall results/eval/gist16per512/answers.jsonl \\
        | python bench/paper_scale/eval_command.py --method gist16per512 --set method=gist16per128 \\
              --set checkpoint=<adapter dir> --set qtypes=passkey --set out=<file> ...

``--set FLAG=VALUE`` replaces the value of ``--FLAG`` or, where the command lacks it, appends ``--FLAG VALUE``. Prints the
command, shell-quoted; with ``--get FLAG``, only that flag's value (e.g. ``--get dataset``: the file the rule reads). Exits 1 naming the method when the dry run holds no evaluate_method.py command for it.
"""
from __future__ import annotations

import argparse
import shlex
import sys

PREFIX = "Shell command: "


def find(dry_run: str, method: str) -> list[str]:
    for line in dry_run.splitlines():
        line = line.strip()
        if line.startswith(PREFIX):
            line = line[len(PREFIX):]
        if "scripts/evaluate_method.py" not in line:
            continue
        argv = shlex.split(line)
        if "--method" in argv and argv[argv.index("--method") + 1] == method:
            return argv
    raise LookupError(f"no 'python scripts/evaluate_method.py --method {method}' command in the dry run")


def replace(argv: list[str], sets: list[tuple[str, str]]) -> list[str]:
    argv = list(argv)
    for flag, value in sets:
        f = f"--{flag}"
        if f in argv:
            argv[argv.index(f) + 1] = value
        else:
            argv += [f, value]
    return argv


def pair(arg: str) -> tuple[str, str]:
    flag, sep, value = arg.partition("=")
    if not sep or not flag:
        raise argparse.ArgumentTypeError(f"expected FLAG=VALUE, got {arg!r}")
    return flag, value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", required=True, help="the method whose command the dry run holds")
    p.add_argument("--set", type=pair, action="append", default=[], metavar="FLAG=VALUE")
    p.add_argument("--get", metavar="FLAG", help="print this flag's value instead of the command")
    a = p.parse_args(argv)
    try:
        cmd = replace(find(sys.stdin.read(), a.method), a.set)
        if a.get and f"--{a.get}" not in cmd:
            raise LookupError(f"the command has no --{a.get}")
    except LookupError as e:
        print(f"eval_command: {e}", file=sys.stderr)
        return 1
    print(cmd[cmd.index(f"--{a.get}") + 1] if a.get else shlex.join(cmd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
