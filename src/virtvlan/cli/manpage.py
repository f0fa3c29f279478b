"""virt-vlan(8) and virt-vlan.conf(5), generated from the code they describe.

virt-vlan(8) is built from the same argparse parser that `--help` prints,
plus the tables of cli/envvars.py (ENVIRONMENT, EXIT STATUS);
virt-vlan.conf(5) from the config loader's key table (parse/config.py
KEYS). So neither can drift from the code: the Debian build runs `python3 -m
virtvlan.cli.manpage [virt-vlan.8 | virt-vlan.conf.5]` and installs what it
prints. Nothing here runs on a hook's path. Why this is our code and not
argparse-manpage: docs/man-pages.md.
"""

import argparse
import sys
from typing import Iterable, List, Optional, TextIO

from virtvlan import __version__
from virtvlan.cli.envvars import ENVIRONMENT, EXIT_STATUS
from virtvlan.parse import config

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
    out += [".SH ENVIRONMENT"]
    for var in ENVIRONMENT:
        out += [".TP", ".B %s" % var.name, _roff(var.meaning), ".br",
                _roff("Default: %s." % var.default)]
    out += [".SH EXIT STATUS"]
    for program, statuses in EXIT_STATUS:
        out += [".SS %s" % _roff(program)]
        for status, meaning in statuses:
            out += [".TP", ".B %s" % status, _roff(meaning)]
    out += [".SH FILES", ".TP", ".B /etc/virt-vlan/virt-vlan.conf",
            "Host configuration: uplinks, allowed VLANs, naming; see virt\\-vlan.conf(5).",
            ".TP", ".B /etc/libvirt/hooks/qemu.d/virt-vlan, /etc/libvirt/hooks/network.d/virt-vlan",
            "The libvirt hook drop-ins.",
            ".TP", ".B /run/virt-vlan/", "Host lock and reservations.",
            ".SH SEE ALSO", "virt\\-vlan.conf(5), virsh(1), ip(8), bridge(8)"]
    return "\n".join(out) + "\n"


def example_config() -> str:
    """A config that sets every key of the table to its example value."""
    lines = []
    for section, header, _ in config.SECTIONS:
        lines.append(header.replace("NAME", "eth0"))
        lines += ["%s = %s" % (key.name, key.example) for key in config.keys(section)]
        lines.append("")
    return "\n".join(lines)


def conf_page() -> str:
    """virt-vlan.conf(5) in roff, from the config loader's key table."""
    out = [".TH VIRT-VLAN.CONF 5 %s \"virt-vlan %s\" \"File Formats\"" % (_DATE, __version__)]
    # No hyphenation: key names and values are typed as printed.
    out += [".nh", ".SH NAME", "virt\\-vlan.conf \\- virt\\-vlan host configuration"]
    out += [".SH SYNOPSIS", _roff(config.DEFAULT_PATH)]
    out += [".SH DESCRIPTION", _roff(
        "The host admin's list of uplinks and of the VLANs guests may ask for on each: a "
        "domain can only use VLANs listed here, on uplinks listed here. virt-vlan(8), its "
        "libvirt hooks and its agent read it; $%s names another file. The file has [section] "
        "headers and 'key = value' lines; '#' or ';' starts a comment at the start of a line "
        "or after a space. virt-vlan refuses, naming file and line, any unknown section or "
        "key, a key set twice, a section listed twice and any value it cannot use; "
        "'virt-vlan check-config' shows what it read." % config.ENV_PATH)]
    for section, header, meaning in config.SECTIONS:
        out += [".SH \"THE %s SECTION\"" % _roff(header), _roff(meaning)]
        for key in config.keys(section):
            facts = ["Value: %s." % config.KINDS[key.kind]]
            if key.fields:
                facts.append("Placeholders: %s." % ", ".join("{%s}" % f for f in key.fields))
            if key.required:
                facts.append("Required.")
            elif key.default:
                facts.append("Default: %s." % key.default)
            elif "Default:" not in key.meaning:
                facts.append("Default: none.")
            out += [".TP", ".B %s" % _roff(key.name), _roff(key.meaning), ".br",
                    _roff(" ".join(facts)), ".br",
                    "Example: \\fB%s = %s\\fR" % (_roff(key.name), _roff(key.example))]
    out += [".SH EXAMPLE", "Every key set (the values of the Example lines above):",
            ".PP", ".nf", ".RS", _roff(example_config().rstrip()), ".RE", ".fi"]
    out += [".SH FILES", ".TP", ".B %s" % _roff(config.DEFAULT_PATH),
            "The file; the Debian package installs it with every setting commented out."]
    out += [".SH SEE ALSO", "virt\\-vlan(8)"]
    return "\n".join(out) + "\n"


def main(argv: Optional[List[str]] = None, stream: TextIO = sys.stdout) -> int:
    """Print virt-vlan(8), or virt-vlan.conf(5) with the argument `virt-vlan.conf.5`."""
    from virtvlan.cli.commands import build_parser

    argv = sys.argv[1:] if argv is None else argv
    if argv == ["virt-vlan.conf.5"]:
        stream.write(conf_page())
    elif not argv or argv == ["virt-vlan.8"]:
        stream.write(render(build_parser()))
    else:
        sys.stderr.write("usage: python3 -m virtvlan.cli.manpage [virt-vlan.8 | virt-vlan.conf.5]\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
