"""The package's dependency rules, read from the import statements of every module in s2s_core.

Dependencies point one way (model ← inference ← training; corpus and registry on top), s2s_core
never imports Prefect, and the corpus layer runs without torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "s2s_core"

# What each part of s2s_core may import from s2s_core (besides itself). Top-level modules are
# named by their file (storage, device); subpackages by their folder.
ALLOWED = {
    "errors": set(),
    "storage": set(),
    "device": set(),
    "configs": set(),
    "text": {"storage", "errors"},
    "model": {"text", "configs"},
    "inference": {"model", "text", "device", "storage", "configs", "errors"},
    "evaluation": set(),
    "training": {"model", "text", "inference", "evaluation", "device", "storage", "configs", "errors"},
    "corpus": {"storage", "errors"},
    "registry": {"storage", "inference", "errors"},
}
NEVER = {"prefect", "flows", "tasks"}
NO_TORCH = {"corpus", "evaluation", "registry", "errors"}  # registry reaches torch only through inference


def part_of(module: Path) -> str:
    relative = module.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "s2s_core":  # from s2s_core import storage
                names.update(f"s2s_core.{alias.name}" for alias in node.names)
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path):
    part = part_of(path)
    assert part in ALLOWED, f"{part} is a new part of s2s_core: give it a place in ALLOWED"
    imports = imported_modules(path)
    assert not {m.split(".")[0] for m in imports} & NEVER, f"{path.name} imports orchestration code"
    used = {m.split(".")[1] for m in imports if m.startswith("s2s_core.") and "." in m}
    used.discard(part)
    used.discard("__version__")
    assert used <= ALLOWED[part], f"{part}/{path.name} imports {sorted(used - ALLOWED[part])}"


def test_torch_free_parts_do_not_load_torch():
    """Import every module of the torch-free parts in a fresh interpreter and look at sys.modules."""
    modules = [".".join(("s2s_core", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
               for p in MODULES if part_of(p) in NO_TORCH - {"registry"}]
    assert modules
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted({'torch', 'prefect'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"
