"""Bash completion for `virt-vlan`, generated from its argparse parser.

`script(parser)` walks the parser (commands, their options, which options
take a value, what the positional argument is) and writes a self-contained
bash function: completing costs no Python start. Domain names come from
`virsh -q [-c URI] list --all --name` (with the -c/--connect URI typed on the
line), ports from /sys/class/net.

The package ships the generated script as data (virtvlan/data/virt-vlan,
installed to <prefix>/share/bash-completion/completions/virt-vlan); a unit
test checks it equals what the current parser generates, so a new command
shows up as a failing test until the file is regenerated with
`virt-vlan completion > src/virtvlan/data/virt-vlan`.
"""

import argparse
import os
from typing import Dict, List, Tuple

# Positional arguments we know how to complete, by dest or metavar.
_POSITIONAL_KINDS = {"domain": "domain", "file": "file", "port": "port"}
# Options whose value is a path.
_PATH_OPTIONS = {"config", "hooks_dir", "file"}

SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "virt-vlan")


def _options(parser: argparse.ArgumentParser) -> Tuple[List[str], List[str], List[str], str]:
    """(all option strings, those taking a value, those taking a path, positional kind)."""
    opts: List[str] = []
    valued: List[str] = []
    paths: List[str] = []
    positional = ""
    for action in parser._actions:  # argparse has no public walk of its actions
        if isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            opts += action.option_strings
            if action.nargs != 0:
                valued += action.option_strings
                if action.dest in _PATH_OPTIONS:
                    paths += action.option_strings
        elif not positional:
            key = str(action.metavar or action.dest).lower()
            positional = _POSITIONAL_KINDS.get(key, "none")
    return sorted(opts), sorted(valued), sorted(paths), positional


def _commands(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _words(items: List[str]) -> str:
    return " ".join(items)


def script(parser: argparse.ArgumentParser) -> str:
    """The bash completion script for `parser` (the `virt-vlan` parser)."""
    gopts, gvalued, gpaths, _ = _options(parser)
    commands = _commands(parser)
    cases = []
    for name in sorted(commands):
        opts, valued, paths, positional = _options(commands[name])
        cases.append('        %s) opts="%s"; valued="%s"; paths="%s"; positional=%s ;;'
                     % (name, _words(opts), _words(valued), _words(paths), positional or "none"))
    return _TEMPLATE % {
        "commands": _words(sorted(commands)),
        "gopts": _words(gopts),
        "gvalued": _words(gvalued),
        "gpaths": _words(gpaths),
        "cases": "\n".join(cases),
    }


_TEMPLATE = r'''# bash completion for virt-vlan
# Generated from virt-vlan's argument parser by `virt-vlan completion`; do not edit.

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
    virsh -q ${uri:+-c "$uri"} list --all --name 2>/dev/null
}

_virt_vlan()
{
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local commands="%(commands)s"
    local gopts="%(gopts)s" gvalued="%(gvalued)s" gpaths="%(gpaths)s"
    local opts="" valued="" paths="" positional=none
    local cmd="" cmdat=0 i w IFS=$'\n'
    COMPREPLY=()
    # The command is the first word that is neither an option nor its value.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        if [[ " $gvalued " == *" $w "* ]]; then
            ((i++))
        elif [[ $w != -* ]]; then
            cmd="$w"; cmdat=$i; break
        fi
    done
    if [[ -z $cmd ]]; then
        if [[ " $gpaths " == *" $prev "* ]]; then
            COMPREPLY=($(compgen -f -- "$cur"))
        elif [[ " $gvalued " == *" $prev "* ]]; then
            :
        elif [[ $cur == -* ]]; then
            COMPREPLY=($(IFS=' '; compgen -W "$gopts" -- "$cur"))
        else
            COMPREPLY=($(IFS=' '; compgen -W "$commands" -- "$cur"))
        fi
        return 0
    fi
    case "$cmd" in
%(cases)s
        *) return 0 ;;
    esac
    if [[ " $paths " == *" $prev "* ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
        return 0
    fi
    if [[ " $valued " == *" $prev "* ]]; then
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(IFS=' '; compgen -W "$opts" -- "$cur"))
        return 0
    fi
    # Only the first positional argument is completed.
    local given=0
    for ((i = cmdat + 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        if [[ " $valued " == *" $w "* ]]; then
            ((i++))
        elif [[ $w != -* ]]; then
            ((given++))
        fi
    done
    ((given == 0)) || return 0
    case "$positional" in
        domain) COMPREPLY=($(compgen -W "$(_virt_vlan_domains)" -- "$cur")) ;;
        file) COMPREPLY=($(compgen -f -- "$cur")) ;;
        port) COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur")) ;;
    esac
    return 0
}
complete -F _virt_vlan virt-vlan
'''


def cmd_completion(args: argparse.Namespace) -> int:
    from virtvlan.cli.main import build_parser

    print(script(build_parser()), end="")
    return 0


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "completion", help="print the bash completion script",
        description="Print the bash completion script (the package installs it as "
        "share/bash-completion/completions/virt-vlan). To use it now: "
        "source <(virt-vlan completion)")
    p.set_defaults(func=cmd_completion)
