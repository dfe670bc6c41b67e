"""The package's layout: library modules never import a command module.

A command (`tfgen train`, `tfgen evaluate`, ...) is a thin module of argparse and calls into the
library; only the dispatcher (`tfgen/__main__.py`, `tfgen/cli.py`) may reach the commands. Read
from the source with `ast`, so nothing is imported and a failure names the module and the line.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {f"tfgen.{name}" for name in ("train", "evaluate", "generate", "serve", "sweep", "translate", "bench")}
DISPATCHERS = {"tfgen.__main__", "tfgen.cli"}


def module_name(path):
    """`tfgen/callbacks/pictures.py` -> `tfgen.callbacks.pictures`; a package is its `__init__`'s name."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path):
    """[(line, module)] for every import in the file at `path`, relative ones made absolute;
    `from tfgen import train` counts as importing `tfgen.train`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def command_imports(paths):
    """'module:line imports command' for each import of a command module in `paths`."""
    bad = []
    for path in paths:
        importer = module_name(path)
        if importer in DISPATCHERS:
            continue
        for line, imported in imported_modules(path):
            if imported in COMMANDS and imported != importer:
                bad.append(f"{path.relative_to(REPO)}:{line} ({importer}) imports the command module {imported}")
    return sorted(set(bad))


def test_no_library_module_or_tool_imports_a_command_module():
    paths = sorted((REPO / "tfgen").rglob("*.py")) + sorted((REPO / "tools").glob("*.py"))
    assert paths
    bad = command_imports(paths)
    assert not bad, "library code belongs in library modules, not commands:\n" + "\n".join(bad)


def test_the_check_sees_every_spelling_of_an_import(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    package = tmp_path / "tfgen"
    (package / "callbacks").mkdir(parents=True)
    spellings = {
        "a.py": "import tfgen.train\n",
        "b.py": "from tfgen import cli, evaluate\n",
        "c.py": "from tfgen.generate import save_images\n",
        "d.py": "def f():\n    from . import sweep\n",
        "callbacks/e.py": "from .. import serve\n",
        "f.py": "from tfgen import scoring, training\n",  # library modules: fine
        "__main__.py": "from tfgen import bench\n",  # the dispatcher may
    }
    for name, text in spellings.items():
        (package / name).write_text(text)
    bad = command_imports(sorted(package.rglob("*.py")))
    assert [b.split(" ")[0] for b in bad] == [
        "tfgen/a.py:1",
        "tfgen/b.py:1",
        "tfgen/c.py:1",
        "tfgen/callbacks/e.py:1",
        "tfgen/d.py:2",
    ]
    assert "(tfgen.callbacks.e) imports the command module tfgen.serve" in bad[3]
