"""Every environment variable the code reads is in cli/envvars.py (the table
virt-vlan(8) prints in ENVIRONMENT), and the table lists no variable that
nothing reads. The reads are found in the source's syntax trees:
os.environ.get(X), os.environ[X], os.getenv(X) and `X in os.environ`, where
X is a string or a module-level string constant of the same file."""

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

from virtvlan.cli.envvars import ENVIRONMENT

SRC = Path(__file__).resolve().parents[2] / "src" / "virtvlan"


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ"
            and isinstance(node.value, ast.Name) and node.value.id == "os")


def reads(tree: ast.AST) -> List[ast.AST]:
    """The name expressions of every environment read in `tree`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if ((func.attr in ("get", "pop", "setdefault") and _is_environ(func.value))
                    or (func.attr == "getenv" and isinstance(func.value, ast.Name)
                        and func.value.id == "os")):
                found.append(node.args[0])
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            found.append(node.slice)  # Python >= 3.9: the key expression itself
        elif (isinstance(node, ast.Compare) and len(node.ops) == 1
              and isinstance(node.ops[0], (ast.In, ast.NotIn))
              and _is_environ(node.comparators[0])):
            found.append(node.left)
    return found


def _constants(tree: ast.Module) -> Dict[str, str]:
    out = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            out[node.targets[0].id] = node.value.value
    return out


def names_read() -> Tuple[Set[str], List[str]]:
    """(variable names read under src/, reads whose name is not a constant)."""
    names: Set[str] = set()
    unresolved: List[str] = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _constants(tree)
        for expr in reads(tree):
            if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
                names.add(expr.value)
            elif isinstance(expr, ast.Name) and expr.id in constants:
                names.add(constants[expr.id])
            else:
                unresolved.append("%s:%d" % (path.relative_to(SRC), expr.lineno))
    return names, unresolved


def test_every_variable_read_is_in_the_table_and_back():
    names, unresolved = names_read()
    assert unresolved == [], "environment reads whose name is not a constant"
    table = {var.name for var in ENVIRONMENT}
    assert sorted(names - table) == [], "read but not documented in cli/envvars.py"
    assert sorted(table - names) == [], "documented in cli/envvars.py but read nowhere"
    assert "VIRT_VLAN_CONFIG" in names and "VIRT_VLAN_RUN_DIR" in names


def test_table_has_each_variable_once_with_meaning_and_default():
    names = [var.name for var in ENVIRONMENT]
    assert len(names) == len(set(names))
    assert all(var.meaning and var.default for var in ENVIRONMENT)


def test_the_finder_sees_each_form_of_read():
    tree = ast.parse('import os\nA = "VA"\nos.environ.get(A)\nos.environ["VB"]\n'
                     'os.getenv("VC", "x")\n"VD" in os.environ\nos.environ.get(f())\n')
    kinds = [type(expr).__name__ for expr in reads(tree)]
    assert kinds == ["Name", "Constant", "Constant", "Constant", "Call"]
