"""virt-vlan(8) is generated from the parser: every command and option of
`--help` appears in it, so the two cannot drift apart."""

import argparse
import io
import shutil
import subprocess

from virtvlan.cli import manpage
from virtvlan.cli.main import build_parser


def _page() -> str:
    out = io.StringIO()
    manpage.main([], stream=out)
    return out.getvalue()


def _walk(parser: argparse.ArgumentParser):
    yield parser
    for sub in manpage._subcommands(parser):
        yield from _walk(sub)


def test_every_command_and_option_is_in_the_page():
    page = _page().replace("\\-", "-")
    parser = build_parser()
    subs = manpage._subcommands(parser)
    assert len(subs) >= 8, "the parser has fewer commands than expected"
    for sub in subs:
        assert ".SS %s\n" % sub.prog.split(" ", 1)[1] in page, sub.prog
    for each in _walk(parser):
        for action in each._actions:
            for option in action.option_strings:
                if option in ("-h", "--help"):
                    continue
                assert option in page, "%s of %s is missing from virt-vlan(8)" % (option, each.prog)


def test_page_is_valid_roff_for_man():
    man = shutil.which("man")
    page = _page()
    assert page.startswith(".TH VIRT-VLAN 8 ")
    assert man is not None, "man (Debian's man-db) is needed to check the page"
    done = subprocess.run([man, "--warnings", "-l", "-"], input=page, capture_output=True,
                          text=True, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
    assert "COMMANDS" in done.stdout and "plug" in done.stdout
