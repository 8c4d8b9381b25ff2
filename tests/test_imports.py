"""The architecture's arrows, checked on the source (an ast walk; every import, also those inside functions):
core is the floor; finetune (training) and inference (serving) stand on it and never on each other; web
(the app's backend) uses all three; app.py and scripts (load tests) sit on top, and bench (the measurements)
above scripts, whose load test it drives. No module imports, directly or
through others, a module that imports it back."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "finetune", "inference", "web", "bench", "scripts")
# package → the packages of ours it may import (itself always)
MAY_IMPORT = {"core": set(), "finetune": {"core"}, "inference": {"core"}, "web": {"core", "finetune", "inference"},
              "bench": {"core", "finetune", "inference", "web", "scripts"}, "scripts": {"core", "finetune", "inference", "web"},
              "app": {"core", "finetune", "inference", "web"}}


def modules() -> dict[str, Path]:
    found = {"app": ROOT / "app.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that `name` imports (relative imports resolved; `from p import m` counts m when
    m is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_package_imports_only_the_packages_below_it(package):
    wrong = sorted(f"{name} imports {target}" for name, targets in GRAPH.items() for target in targets
                   if name.split(".")[0] == package and target.split(".")[0] not in MAY_IMPORT[package] | {package})
    assert not wrong, wrong


def test_no_module_imports_itself_back():
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in GRAPH.get(todo.pop(), ()):
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen
    cycles = sorted(name for name in GRAPH if name in reach(name) and not name.endswith("__main__"))
    assert not cycles, f"in an import cycle: {cycles}"


def test_the_walk_sees_the_arrows_it_checks():
    """The walk itself: known arrows are found, relative and absolute."""
    assert "finetune.budget" in GRAPH["finetune.train"] and "core.model" in GRAPH["finetune.train"]
    assert "inference.policy" in GRAPH["inference.classifier"] and "web.backend" in GRAPH["app"]


ENTRY_POINTS = {"app", "core.settings"}  # and every package's __main__, bench and scripts (command lines)


def test_the_environment_is_read_at_the_entry_points_only():
    """Below app.py and the command lines, settings arrive as values (core.settings.Settings, read once at the
    entry point); only core.settings touches os.environ (its `token()` reads HF_TOKEN where it is used, so that
    the secret is never handed around)."""
    readers = re.compile(r"os\.environ|os\.getenv|getenv\(|Settings\.from_env\(")
    below = sorted(name for name, path in modules().items()
                   if name not in ENTRY_POINTS and not name.endswith("__main__")
                   and name.split(".")[0] not in ("bench", "scripts") and readers.search(path.read_text()))
    assert not below, f"read the environment below the entry points: {below}"
