"""The layout holds: ``localdev/`` is pure (no Pulumi), ``components/`` holds the ComponentResources."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PURE = ROOT / "localdev"


def _modules(package: Path) -> list[str]:
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts) for path in package.rglob("*.py") if path.name != "__main__.py"
    )


def test_the_pure_package_names_no_pulumi_module() -> None:
    offenders = []
    for path in sorted(PURE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0].startswith(("pulumi", "components"))]
    assert offenders == []


def test_importing_every_pure_module_loads_no_pulumi_module() -> None:
    """Also catches Pulumi arriving through a third-party import."""
    modules = _modules(PURE)
    assert "localdev.cli" in modules and "localdev.settings" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pulumi')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_every_component_module_defines_a_component_resource() -> None:
    """components/ is the Pulumi shell: each module holds ComponentResources (shell.py: the Command they share)."""
    for path in sorted((ROOT / "components").glob("*.py")):
        if path.name in ("__init__.py", "shell.py"):
            continue
        tree = ast.parse(path.read_text())
        bases = {ast.unparse(b) for node in ast.walk(tree) if isinstance(node, ast.ClassDef) for b in node.bases}
        assert "pulumi.ComponentResource" in bases, f"{path.name} defines no ComponentResource"


def test_every_shipped_script_is_read_by_a_renderer() -> None:
    """A script under localdev/scripts/ that no renderer reads is dead, or a copy of one that is."""
    from localdev import render

    source = (ROOT / "localdev" / "render.py").read_text()
    unread = [p.name for p in sorted(render.SCRIPTS_DIR.glob("*.sh")) if f'"{p.name}"' not in source]
    assert unread == []
