"""The structure rules of docs/architecture.md that import-linter cannot see, and the contracts it checks."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "vidkd"


def nested_vidkd_imports(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """`import vidkd...` / `from vidkd... import` statements inside a function or class body, as
    'path relative to `root`:line'."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for inner in ast.walk(node):
                module = None
                if isinstance(inner, ast.ImportFrom):
                    module = inner.module or ""
                elif isinstance(inner, ast.Import):
                    module = ",".join(alias.name for alias in inner.names)
                if module is not None and "vidkd" in module.split(".")[0].split(","):
                    found.append(f"{path.relative_to(root)}:{inner.lineno}")
    return found


def test_no_function_level_vidkd_imports_outside_the_cli():
    offenders = [hit for path in sorted(PACKAGE.rglob("*.py")) if path.name != "cli.py"
                 for hit in nested_vidkd_imports(path)]
    assert offenders == []


def test_the_check_finds_a_nested_import(tmp_path):
    sample = tmp_path / "vidkd" / "_nested_import_sample.py"  # nothing is written into the package
    sample.parent.mkdir()
    sample.write_text("def f():\n    from vidkd.errors import VidkdError\n    return VidkdError\n")
    assert nested_vidkd_imports(sample, tmp_path) == ["vidkd/_nested_import_sample.py:2"]
    sample.write_text("from vidkd.errors import VidkdError\n\ndef f():\n    return VidkdError\n")
    assert nested_vidkd_imports(sample, tmp_path) == []


def test_layering_contracts_hold():
    binary = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert binary is not None, "import-linter is not installed: pip install -e '.[dev]' (make test does)"
    result = subprocess.run([binary], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:]


def method_imports(path: Path) -> list[str]:
    """The `vidkd.methods...` modules a file imports (`from vidkd.methods import x` counts as the package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    found += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    return [name for name in found if name == "vidkd.methods" or name.startswith("vidkd.methods.")]


def test_the_engine_knows_the_method_interface_only():
    """The engine imports `vidkd.methods.base` and no method, whatever methods are added later (the
    contract in .importlinter names today's method modules, and catches indirect imports of them)."""
    imports = {name for path in sorted((PACKAGE / "engine").rglob("*.py")) for name in method_imports(path)}
    assert imports <= {"vidkd.methods.base"} and imports


def test_the_method_import_check_sees_a_method(tmp_path):
    sample = tmp_path / "trainer.py"
    sample.write_text("from vidkd.methods.base import Method\nfrom vidkd.methods import cvrl\nimport vidkd.methods.pcl\n")
    assert method_imports(sample) == ["vidkd.methods.pcl", "vidkd.methods.base", "vidkd.methods"]
