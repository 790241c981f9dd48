"""The import rules the layout promises (README, "Layout"), read from the source with ast:
the core never imports the UI libraries, and no tab's module imports another tab's."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minigpt_tui"
# A tab is a module or a package under tui/ (with the modules only it uses); app.py composes them
# and is no tab.
TABS = {
    "minigpt_tui.tui.train": "train",
    "minigpt_tui.tui.checkpoints_tab": "checkpoints",
    "minigpt_tui.tui.generate_tab": "generate",
    "minigpt_tui.tui.generation": "generate",  # the Generate tab's streaming worker
    "minigpt_tui.tui.chat_actions": "generate",  # its conversation: transcript, versions, files
    "minigpt_tui.tui.chat_screens": "generate",  # its template editor and saved-conversation list
    "minigpt_tui.tui.run_loading": "generate",  # loading a run into it
    "minigpt_tui.tui.compare": "checkpoints",  # the run comparison the Checkpoints tab opens
    "minigpt_tui.tui.run_tidy": "checkpoints",  # its marks, rename, notes, clearing stubs
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (lazy imports count)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
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


def tab_of(module: str) -> str | None:
    return next((tab for prefix, tab in TABS.items() if module == prefix or module.startswith(prefix + ".")), None)


def test_the_core_never_imports_the_ui():
    """Neither the UI libraries nor the app's own UI modules (imports go tui -> core only)."""
    offenders = {
        module_name(path): sorted(m for m in imports(path) if m.split(".")[0] in ("textual", "rich")
                                  or m.startswith(("minigpt_tui.tui", "minigpt_tui.cli")))
        for path in (PACKAGE / "core").rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_no_tab_imports_another_tabs_module():
    offenders = []
    for path in (PACKAGE / "tui").rglob("*.py"):
        own = tab_of(module_name(path))
        for imported in imports(path):
            other = tab_of(imported)
            if other is not None and other != own and module_name(path) != "minigpt_tui.tui.app":
                offenders.append(f"{module_name(path)} imports {imported}")
    assert not offenders


def test_every_tab_named_here_exists():
    """The rules above check nothing if a tab is renamed: keep TABS in step with the tree."""
    for tab in TABS:
        relative = Path(*tab.split(".")[1:])
        assert (PACKAGE / relative).is_dir() or (PACKAGE / relative).with_suffix(".py").is_file(), tab


def test_cli_front_ends_import_common_never_main_or_each_other():
    """cli/: main imports the front ends (lazily); a front end imports only common of the package,
    and common imports none of it, so the command line has no import circle."""
    offenders = []
    for path in (PACKAGE / "cli").glob("*.py"):
        name = module_name(path)
        if name in ("minigpt_tui.cli", "minigpt_tui.cli.main"):
            continue
        allowed = () if name == "minigpt_tui.cli.common" else ("minigpt_tui.cli.common",)
        offenders += [f"{name} imports {m}" for m in imports(path) if m.startswith("minigpt_tui.cli")
                      and not any(m == a or m.startswith(a + ".") for a in allowed)]
    assert (PACKAGE / "cli" / "common.py").is_file() and not offenders
