"""No module under src/ uses another virtvlan module's private (_name) names:
what crosses a module boundary is public, named without an underscore and
documented."""

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parents[2] / "src"


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def uses_of_other_modules_privates(path: pathlib.Path, root: pathlib.Path = SRC):
    """'file:line name' for each `from virtvlan.x import _y` and each
    `x._y` where `x` is a virtvlan module imported in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_name(path, root)
    modules = set()  # local names bound to virtvlan modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("virtvlan"):
            for alias in node.names:
                if _private(alias.name) and node.module != here:
                    found.append("%s:%d %s" % (path.name, node.lineno, alias.name))
                # `from virtvlan.host import rtnl`: rtnl is a module (lowercase by convention)
                if alias.name.islower():
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("virtvlan") and alias.asname:
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in modules):
            found.append("%s:%d %s.%s" % (path.name, node.lineno, node.value.id, node.attr))
    return found


def test_no_private_name_is_used_outside_its_module():
    found = []
    for path in sorted((SRC / "virtvlan").rglob("*.py")):
        found += uses_of_other_modules_privates(path)
    assert found == []


def test_the_check_sees_both_spellings(tmp_path):
    pkg = tmp_path / "virtvlan"
    pkg.mkdir()
    sample = pkg / "sample.py"
    sample.write_text("from virtvlan.host import rtnl\nfrom virtvlan.host.rtnl import _ip\n"
                      "x = rtnl._read\n", encoding="utf-8")
    assert uses_of_other_modules_privates(sample, tmp_path) == ["sample.py:2 _ip",
                                                                "sample.py:3 rtnl._read"]
