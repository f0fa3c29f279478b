"""virt-vlan(8), generated from the command-line parser.

The man page is built from the same argparse parser that `--help` prints, so
the two cannot drift apart: the Debian build runs `python3 -m
virtvlan.cli.manpage` and installs what it prints. Nothing here runs on a hook's
path.
"""

import argparse
import sys
from typing import Iterable, List, Optional, TextIO

from virtvlan import __version__

_DATE = "2026-12-02"  # of the version below; bumped with __version__


def _roff(text: str) -> str:
    """Text safe for roff: backslashes and leading dots/quotes escaped."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def _subcommands(parser: argparse.ArgumentParser) -> List[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases share one parser
                    seen.add(id(sub))
                    found.append(sub)
    return found


def _help_of(parser: argparse.ArgumentParser, name: str) -> str:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name:
                    return choice.help or ""
    return ""


def _options(parser: argparse.ArgumentParser) -> Iterable[str]:
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            names = ", ".join(action.option_strings)
            if action.nargs != 0:
                names += " " + (action.metavar or action.dest.upper())
        else:
            names = action.metavar or action.dest.upper()
        yield ".TP\n.B %s\n%s" % (_roff(names), _roff(action.help or ""))


def render(parser: argparse.ArgumentParser) -> str:
    """The whole page in roff (man(7) macros)."""
    prog = parser.prog
    out = [".TH %s 8 %s \"%s %s\" \"System Administration\"" % (
        prog.upper(), _DATE, prog, __version__)]
    out += [".SH NAME", "%s \\- %s" % (prog, _roff((parser.description or "").rstrip(".")))]
    out += [".SH SYNOPSIS", _roff(parser.format_usage().replace("usage: ", "").strip())]
    out += [".SH OPTIONS"] + list(_options(parser))
    out.append(".SH COMMANDS")
    for sub in _subcommands(parser):
        name = sub.prog.split(" ", 1)[1]
        out += [".SS %s" % _roff(name), _roff(_help_of(parser, name)),
                ".PP", ".nf", _roff(sub.format_usage().replace("usage: ", "").strip()), ".fi"]
        if sub.description:
            out += [".PP", _roff(sub.description)]
        out += list(_options(sub))
    if parser.epilog:
        out += [".SH NOTES", _roff(parser.epilog)]
    out += [".SH FILES", ".TP", ".B /etc/virt-vlan/virt-vlan.conf",
            "Host configuration: uplinks, allowed VLANs, naming.",
            ".TP", ".B /etc/libvirt/hooks/qemu.d/virt-vlan, /etc/libvirt/hooks/network.d/virt-vlan",
            "The libvirt hook drop-ins.",
            ".TP", ".B /run/virt-vlan/", "Host lock and reservations.",
            ".SH SEE ALSO", "virsh(1), ip(8), bridge(8)"]
    return "\n".join(out) + "\n"


def main(argv: Optional[List[str]] = None, stream: TextIO = sys.stdout) -> int:
    from virtvlan.cli.main import build_parser

    stream.write(render(build_parser()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
