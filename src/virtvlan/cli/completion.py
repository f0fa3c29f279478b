"""Bash completion for `virt-vlan`, generated from its argparse parser by shtab.

shtab (a build-time tool, not a dependency of the installed package) walks
the parser and writes a self-contained bash function, so completing costs
no Python start. What shtab cannot know comes in as bash functions in its
preamble, attached to the arguments they complete: domain names from
`virsh -q [-c URI] list --all --name` (with the -c/--connect URI typed on
the line), ports from /sys/class/net; paths use shtab's file completion.

The package ships the generated script as data (virtvlan/data/virt-vlan,
installed to <prefix>/share/bash-completion/completions/virt-vlan) and
`virt-vlan completion` prints that file. A unit test checks it equals what
the current parser generates, so a new command shows up as a failing test
until the file is regenerated with
`.venv/bin/python -m virtvlan.cli.completion > src/virtvlan/data/virt-vlan`.
Why shtab and which version: docs/man-pages.md.
"""

import argparse
import os
import sys
from typing import Dict, Iterator

# Positional arguments we complete, by dest or metavar: the bash function.
_POSITIONAL_FUNCTIONS = {"domain": "_virt_vlan_domains", "port": "_virt_vlan_ports",
                         "file": "_shtab_compgen_files"}
# Options whose value is a path.
_PATH_OPTIONS = {"config", "hooks_dir", "file"}

SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "virt-vlan")

_PREAMBLE = r"""
# Generated from virt-vlan's argument parser by shtab
# (python3 -m virtvlan.cli.completion); do not edit.

_virt_vlan_domains()
{
    # Domain names straight from virsh (no Python start), honouring -c URI.
    local uri="" i
    for ((i = 1; i < ${#COMP_WORDS[@]}; i++)); do
        case "${COMP_WORDS[i]}" in
            -c|--connect) uri="${COMP_WORDS[i+1]}" ;;
            --connect=*) uri="${COMP_WORDS[i]#--connect=}" ;;
        esac
    done
    compgen -W "$(virsh -q ${uri:+-c "$uri"} list --all --name 2>/dev/null)" -- "$1"
}

_virt_vlan_ports()
{
    compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$1"
}
"""


def _commands(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public walk of its actions
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    yield from parser._actions
    for sub in _commands(parser).values():
        yield from _actions(sub)


def script(parser: argparse.ArgumentParser) -> str:
    """The bash completion script for `parser` (the `virt-vlan` parser).

    Needs shtab (the [test] extra); the package's users get the shipped file.
    """
    import shtab

    for action in _actions(parser):
        if isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            if action.nargs != 0 and action.dest in _PATH_OPTIONS:
                action.complete = shtab.FILE  # type: ignore[attr-defined]
        else:
            function = _POSITIONAL_FUNCTIONS.get(str(action.metavar or action.dest).lower())
            if function:
                action.complete = {"bash": function}  # type: ignore[attr-defined]
    return shtab.complete(parser, "bash", preamble=_PREAMBLE).rstrip("\n") + "\n"


def cmd_completion(args: argparse.Namespace) -> int:
    with open(SHIPPED, encoding="utf-8") as handle:
        sys.stdout.write(handle.read())
    return 0


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "completion", help="print the bash completion script",
        description="Print the bash completion script (the package installs it as "
        "share/bash-completion/completions/virt-vlan). To use it now: "
        "source <(virt-vlan completion)")
    p.set_defaults(func=cmd_completion)


if __name__ == "__main__":
    from virtvlan.cli.commands import build_parser

    sys.stdout.write(script(build_parser()))
