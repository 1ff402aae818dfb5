"""No import cycle between the modules of marllbd (and the marllbd_rl plugin).

The graph is built from the source with ast: an edge for every import that runs when
the module is imported (module level, also inside a module-level `if`/`try`/`with` or
class body), none for imports inside functions or under `if TYPE_CHECKING:`.  An
import of a package's submodule is an edge to that submodule; the implicit import of
the parent package that Python performs first is not an edge.

Two graphs are checked: the modules', and the parts' of each package (a subpackage
such as marllbd.daemon, or a module such as marllbd.features, with every module
inside a subpackage counted as that subpackage).  The second catches two subpackages
that use each other through different modules (marllbd.backends needing
marllbd.daemon.config while marllbd.daemon.app needs marllbd.backends), which works
in today's import order but breaks when one of them is imported first in another way.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"marllbd": REPO / "marllbd", "marllbd_rl": REPO / "plugins" / "marllbd_rl"}


def modules(roots: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file under each package root."""
    found: dict[str, Path] = {}
    for package, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time(body: Iterable[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module body runs."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time(node.body)
            yield from _import_time(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _import_time(block)
            for handler in node.handlers:
                yield from _import_time(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _import_time(node.body)
        # FunctionDef / AsyncFunctionDef bodies run later, when called: not an edge.


def _known(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that `name` is or lies in (None outside our packages)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def import_graph(known: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _import_time(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import sub` imports the submodule pkg.sub when there is one.
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
                ]
            edges |= {t for t in map(lambda t: _known(t, known), targets) if t and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def part(module: str) -> str:
    """The package part a module belongs to: its first two dotted components."""
    return ".".join(module.split(".")[:2])


def part_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        mine = part(module)
        parts.setdefault(mine, set()).update(p for p in map(part, targets) if p != mine)
    return parts


def test_no_import_cycle() -> None:
    known = modules(ROOTS)
    assert "marllbd.daemon.app" in known and "marllbd_rl" in known
    graph = import_graph(known)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between modules: " + " -> ".join(cycle or [])
    cycle = find_cycle(part_graph(graph))
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle or [])


def test_backends_do_not_import_the_daemon_config() -> None:
    graph = import_graph(modules(ROOTS))
    assert "marllbd.backends.config" in graph["marllbd.daemon.config"]
    assert not any(t.startswith("marllbd.daemon") for t in graph["marllbd.backends"])


def test_the_walk_finds_a_cycle_and_skips_lazy_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("try:\n    from .. import c\nexcept ImportError:\n    pass\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
        "def later():\n    import pkg.a\n"
    )
    known = modules({"pkg": pkg})
    graph = import_graph(known)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"}
    assert graph["pkg.c"] == set()  # TYPE_CHECKING and function-level imports are no edges
    assert find_cycle(graph) is None
    (pkg / "c.py").write_text("import pkg.a\n")
    assert find_cycle(import_graph(known)) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    # No module cycle, but the subpackage and a module use each other: a package cycle.
    (pkg / "c.py").write_text("")
    (pkg / "sub" / "d.py").write_text("import pkg.a\n")
    known = modules({"pkg": pkg})
    graph = import_graph(known)
    assert find_cycle(graph) is None
    assert find_cycle(part_graph(graph)) == ["pkg.a", "pkg.sub", "pkg.a"]


def test_nothing_imports_ray_without_being_asked(tmp_path: Path) -> None:
    # marllbd, the daemon, the training package, the distributed package itself and an
    # `eval` run without --ray: none of them may need the distributed extra.
    import subprocess
    import sys

    scenario = tmp_path / "tiny.toml"
    scenario.write_text(
        'name = "tiny"\nduration = 2.0\n[servers]\nworkers = [1, 2]\n'
        '[trace]\nkind = "poisson"\nload = 0.5\n'
    )
    code = (
        "import sys, marllbd, marllbd.daemon.app, marllbd.training, marllbd.distributed\n"
        "from marllbd import cli\n"
        f"assert cli.main(['eval', '--scenario', {str(scenario)!r}, '--policies', 'sed', "
        f"'--seeds', '1', '--out', {str(tmp_path / 'out')!r}]) == 0\n"
        "sys.exit(3 if 'ray' in sys.modules else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
