"""virt-vlan(8) is generated from the parser: every command and option of
`--help` appears in it, so the two cannot drift apart; its ENVIRONMENT and
EXIT STATUS come from cli/envvars.py. virt-vlan.conf(5) is generated from
the config loader's key table and lists exactly the keys the loader takes."""

import argparse
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from virtvlan.cli import envvars, manpage
from virtvlan.cli.commands import build_parser
from virtvlan.errors import InputError
from virtvlan.parse import config


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


# --- virt-vlan(8): ENVIRONMENT and EXIT STATUS ----------------------------------------


def _section(page: str, name: str) -> str:
    """The roff of section `name` of `page`, up to the next .SH."""
    start = page.index(".SH %s\n" % name)
    end = page.find("\n.SH ", start + 1)
    return page[start:end if end != -1 else len(page)]


def test_environment_lists_every_variable_of_the_table():
    environment = _section(_page(), "ENVIRONMENT")
    assert len(envvars.ENVIRONMENT) >= 8
    for var in envvars.ENVIRONMENT:
        assert ".B %s\n" % var.name in environment, var.name


def test_exit_status_names_the_cli_check_and_hooks():
    status = _section(_page(), "EXIT STATUS").replace("\\-", "-")
    for program in (".SS virt-vlan\n", ".SS virt-vlan check\n", ".SS hook drop-ins\n"):
        assert program in status
    # The CLI's codes as main() returns them.
    assert [code for code, _ in dict(envvars.EXIT_STATUS)["virt-vlan"]] == ["0", "1", "2", "130"]
    assert [code for code, _ in dict(envvars.EXIT_STATUS)["virt-vlan check"]] == ["0", "1", "2"]


def test_check_exit_codes_match_the_audit():
    from virtvlan.checks import audit

    assert sorted(audit.EXIT.values()) == [0, 1, 2]


# --- virt-vlan.conf(5), from the config loader's key table -----------------------------


def _conf_page() -> str:
    out = io.StringIO()
    assert manpage.main(["virt-vlan.conf.5"], stream=out) == 0
    return out.getvalue()


def _page_keys(page: str) -> dict:
    """{section header: [key names]} as the page lists them (.TP/.B entries)."""
    found: dict = {}
    section = None
    lines = page.replace("\\-", "-").splitlines()
    for number, line in enumerate(lines):
        match = re.match(r'\.SH "THE (.*) SECTION"$', line)
        if match:
            section = match.group(1)
            found[section] = []
        elif line.startswith(".SH "):
            section = None
        elif section and line == ".TP":
            found[section].append(lines[number + 1][len(".B "):])
    return found


def test_conf_page_lists_exactly_the_keys_the_table_defines():
    listed = _page_keys(_conf_page())
    assert listed == {header: [k.name for k in config.keys(section)]
                      for section, header, _ in config.SECTIONS}


def test_conf_page_lists_exactly_the_keys_the_loader_accepts(tmp_path):
    listed = _page_keys(_conf_page())
    assert set(listed) == {"[global]", "[uplink NAME]"}
    # Every listed key loads, each section's keys all at once (the page's EXAMPLE).
    path = tmp_path / "every-key.conf"
    path.write_text(manpage.example_config())
    loaded = config.load(str(path))
    assert loaded is not None and loaded.uplinks[0].mtu == 1496
    assert loaded.uplinks[0].trunk_filtering and loaded.uplinks[0].host_vlans == (10,)
    text = path.read_text()
    for header, names in listed.items():
        for name in names:
            assert re.search(r"^%s = " % re.escape(name), text, re.MULTILINE), name
    # ...and a key the page does not list is refused, in either section.
    for section in ("[global]\n", "[uplink eth0]\nallowed-vlans = 5\n"):
        with pytest.raises(InputError, match="unknown key 'not-a-key'"):
            config.parse(section + "not-a-key = 1\n", "test.conf")
    # The loader's own key sets are the table's.
    assert config.GLOBAL_KEYS == set(listed["[global]"])
    assert config.UPLINK_KEYS == set(listed["[uplink NAME]"])


def test_the_shipped_example_config_uses_only_listed_keys():
    """xml-examples/virt-vlan.conf, uncommented, is a real config with every key."""
    example = Path(__file__).resolve().parents[2] / "xml-examples" / "virt-vlan.conf"
    text = re.sub(r"^# (host-vlans|mtu) =.*$", r"\1 = 1496", example.read_text(), flags=re.M)
    text = text.replace("host-vlans = 1496", "host-vlans =")
    loaded = config.parse(text, str(example))
    assert loaded.uplinks[0].mtu == 1496
    used = {m.group(1) for m in re.finditer(r"^([a-z-]+) =", text, re.MULTILINE)}
    assert used == {k.name for k in config.KEYS}


def test_conf_page_is_valid_roff_for_man():
    man = shutil.which("man")
    assert man is not None, "man (Debian's man-db) is needed to check the page"
    done = subprocess.run([man, "--warnings", "-l", "-"], input=_conf_page(),
                          capture_output=True, text=True,
                          env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
    assert "allowed-vlans" in done.stdout and "EXAMPLE" in done.stdout


def test_unknown_page_is_a_usage_error():
    assert manpage.main(["virt-vlan.conf"], stream=io.StringIO()) == 2


def test_the_configuration_page_lists_exactly_the_keys_the_loader_accepts():
    # docs/configuration.md's tables are prose written by hand beside the
    # generated virt-vlan.conf(5): a key added to KEYS must be added there too.
    import re
    from pathlib import Path

    from virtvlan.parse import config

    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    every = page.split("## Every key", 1)[1]
    tables = re.split(r"^`\[uplink NAME\]`:$", every, maxsplit=1, flags=re.M)
    documented = [set(re.findall(r"^\| `([a-z-]+)` \|", part, flags=re.M)) for part in tables]
    by_section = [{k.name for k in config.KEYS if k.section == config.GLOBAL},
                  {k.name for k in config.KEYS if k.section != config.GLOBAL}]
    assert documented == by_section
