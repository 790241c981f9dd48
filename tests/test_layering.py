"""The import rules the layout promises (docs/development.md, "Layout"), read from the source with ast:
the core never imports the UI libraries, no tab's module imports another tab's, and no two
modules of the package import each other, directly or round a longer circle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minigpt_tui"
# A tab is a folder under tui/ holding its pane and the modules only it uses; tui/widgets/ is
# shared, and app.py (composition and routing between tabs) is no tab.
TAB_FOLDERS = ("train", "checkpoints", "generate")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, type_checking: bool = True) -> set[str]:
    """Every module a file imports, at the top or inside a function (lazy imports count);
    type_checking=False leaves out those under `if TYPE_CHECKING:` (never run)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    if not type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports when run (a name imported from a module is
    not a module: only module names that exist are kept)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports(path, type_checking=False) if m in modules and m != name}
            for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def tab_of(module: str) -> str | None:
    """The tab whose folder holds `module` (minigpt_tui.tui.<tab>...), or None."""
    parts = module.split(".")
    return parts[2] if parts[:2] == ["minigpt_tui", "tui"] and len(parts) > 2 and parts[2] in TAB_FOLDERS else None


def test_the_core_never_imports_the_ui():
    """Neither the UI libraries nor the app's own UI modules (imports go tui -> core only)."""
    offenders = {
        module_name(path): sorted(m for m in imports(path) if m.split(".")[0] in ("textual", "rich")
                                  or m.startswith(("minigpt_tui.tui", "minigpt_tui.cli")))
        for path in (PACKAGE / "core").rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


# core's rooms, lowest first: a module may import its own room and those before it, never one after.
CORE_ROOMS = ("", "data", "models", "runs", "pretrained", "export", "generation", "training")  # "": config, paths, errors, ...


def core_room(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["minigpt_tui", "core"]:
        return None
    return CORE_ROOMS.index(parts[2]) if len(parts) > 2 and parts[2] in CORE_ROOMS else 0  # 0: core's top


def test_core_rooms_import_only_rooms_below_them():
    offenders = []
    for path in (PACKAGE / "core").rglob("*.py"):
        own = core_room(module_name(path))
        for imported in imports(path, type_checking=False):
            room = core_room(imported)
            if room is not None and room > own:
                offenders.append(f"{module_name(path)} ({CORE_ROOMS[own] or 'top'}) imports {imported}")
    assert not offenders


def test_no_tab_imports_another_tabs_module():
    offenders = []
    for path in (PACKAGE / "tui").rglob("*.py"):
        own = tab_of(module_name(path))
        for imported in imports(path):
            other = tab_of(imported)
            if other is not None and other != own and module_name(path) != "minigpt_tui.tui.app":
                offenders.append(f"{module_name(path)} imports {imported}")
    assert not offenders


def test_every_tab_has_its_folder():
    """The rule above checks nothing if a tab's folder is renamed: keep TAB_FOLDERS in step with the tree."""
    for tab in TAB_FOLDERS:
        assert (PACKAGE / "tui" / tab / "pane.py").is_file() or (PACKAGE / "tui" / tab / "__init__.py").is_file(), tab
    loose = [p.name for p in (PACKAGE / "tui").glob("*.py") if "tab" in p.stem or "pane" in p.stem]
    assert not loose, f"a tab's module outside its folder: {loose}"


def test_no_import_circles():
    """No module imports itself round a circle (imports under `if TYPE_CHECKING:` never run)."""
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_circles():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_module_is_over_500_lines():
    """A module over ~500 lines is doing two jobs (split it by job)."""
    long = {module_name(p): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not long


def test_cli_front_ends_import_common_never_dispatch_or_each_other():
    """cli/: dispatch imports the front ends (lazily); a front end imports only common of the package,
    and common imports none of it, so the command line has no import circle."""
    offenders = []
    for path in (PACKAGE / "cli").glob("*.py"):
        name = module_name(path)
        if name in ("minigpt_tui.cli", "minigpt_tui.cli.dispatch", "minigpt_tui.cli.standby"):
            continue  # (the standby is a deferred dispatch: it becomes whatever command it is given)
        allowed = () if name == "minigpt_tui.cli.common" else ("minigpt_tui.cli.common",)
        offenders += [f"{name} imports {m}" for m in imports(path) if m.startswith("minigpt_tui.cli")
                      and not any(m == a or m.startswith(a + ".") for a in allowed)]
    assert (PACKAGE / "cli" / "common.py").is_file() and not offenders
