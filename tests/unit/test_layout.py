"""The layout's rules, checked on the source: imports name the file that defines them, dependencies run one way,
modules stay small.

Dependencies run: the CLI (``services/cli``) → the services (``services/ingest``, ``services/detector``), the
tools (``services/offline``, ``services/tools``) and the web dashboard (``services/dashboard``) → ``shared`` →
``orderflow_client``. Ingest and the detector never import each other; a bot's package imports nothing of the rest.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO

PACKAGES = ("orderflow_client", "shared", "services")
LINE_LIMIT = 400
LONG_MODULE_REASON = "400 lines"  # e.g. "Why this file is over 400 lines: …" in its top docstring

# who may import whom: a module under the key may import only modules under one of the listed prefixes (and the
# standard library and third-party packages)
ALLOWED = {
    "orderflow_client": ("orderflow_client",),
    "shared": ("shared", "orderflow_client"),
    "services.ingest": ("services.ingest", "shared", "orderflow_client"),
    "services.detector": ("services.detector", "shared", "orderflow_client"),
    "services.offline": ("services.offline", "services.ingest", "services.detector", "shared", "orderflow_client"),
    "services.tools": (
        "services.tools",
        "services.offline",
        "services.ingest",
        "services.detector",
        "shared",
        "orderflow_client",
    ),
    "services.dashboard": ("services.dashboard", "shared", "orderflow_client"),
    "services.cli": ("services", "shared", "orderflow_client"),
    "services": ("services",),  # services/__init__.py: a docstring
}


def modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def first_party_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of each import of one of our packages in ``path`` (``from a.b import c`` gives ``a.b.c``
    when ``a.b.c`` is a module, else ``a.b``)."""
    known = modules()
    imports = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imports += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                imports.append((node.lineno, candidate if candidate in known else node.module))
    return [(line, name) for line, name in imports if name.split(".")[0] in PACKAGES]


def owner(module: str) -> str:
    """The key of :data:`ALLOWED` a module falls under."""
    return max((key for key in ALLOWED if module == key or module.startswith(key + ".")), key=len)


def test_every_import_names_a_module_or_a_name_defined_in_one():
    """No aliasing: an imported first-party name resolves to a file (a module) or to a name that file defines or
    imports itself — never to a name registered at run time."""
    known = modules()
    missing = []
    for path in known.values():
        for line, imported in first_party_imports(path):
            if imported not in known:
                missing.append(f"{path.relative_to(REPO)}:{line} imports {imported}, which no file defines")
    assert not missing, "\n".join(missing)


def test_nothing_registers_modules_under_other_names():
    offenders = [str(path.relative_to(REPO)) for path in modules().values() if "sys.modules[" in path.read_text()]
    assert not offenders


def test_package_init_files_hold_only_a_docstring():
    """Importers name the module that defines a thing, not a package that re-exports it (the bot's entry point,
    ``orderflow_client/__init__.py``, is the one exception)."""
    offenders = []
    for name, path in modules().items():
        if path.name != "__init__.py" or name == "orderflow_client":
            continue
        body = ast.parse(path.read_text()).body
        if not (len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders


def test_dependencies_run_one_way():
    wrong = []
    for name, path in modules().items():
        allowed = ALLOWED[owner(name)]
        for line, imported in first_party_imports(path):
            if not any(imported == prefix or imported.startswith(prefix + ".") for prefix in allowed):
                wrong.append(f"{path.relative_to(REPO)}:{line}: {owner(name)} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_wrong_way_import(tmp_path):
    """The checker itself can fail: an ingest module importing the detector is caught."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text("from services.detector.engine import Engine\nimport shared.config\n")
    imported = [name for _line, name in first_party_imports(snippet)]
    assert imported == ["services.detector.engine", "shared.config"]
    allowed = ALLOWED[owner("services.ingest.feed")]
    assert not any(imported[0].startswith(prefix + ".") for prefix in allowed)
    assert any(imported[1].startswith(prefix + ".") for prefix in allowed)


def test_no_module_is_over_400_lines_without_a_reason_at_its_top():
    long = []
    for _name, path in modules().items():
        text = path.read_text()
        if text.count("\n") > LINE_LIMIT:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if LONG_MODULE_REASON not in docstring:
                long.append(f"{path.relative_to(REPO)}: {text.count(chr(10))} lines")
    assert not long, f"over {LINE_LIMIT} lines with no '{LONG_MODULE_REASON} …' in the docstring: {long}"


def one_letter_apart(first: str, second: str) -> bool:
    """Whether two names differ by one letter changed, added or removed (``_recent``/``recent`` too)."""
    first, second = first.lstrip("_"), second.lstrip("_")
    if first == second:
        return True
    if len(first) == len(second):
        return sum(a != b for a, b in zip(first, second, strict=True)) == 1
    shorter, longer = sorted((first, second), key=len)
    return len(longer) - len(shorter) == 1 and any(
        longer[:index] + longer[index + 1 :] == shorter for index in range(len(longer))
    )


def test_no_two_functions_of_a_module_are_one_letter_apart():
    close = []
    for _name, path in modules().items():
        tree = ast.parse(path.read_text())
        names = sorted(
            {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
        )
        close += [
            f"{path.relative_to(REPO)}: {first} / {second}"
            for index, first in enumerate(names)
            for second in names[index + 1 :]
            if first != second and one_letter_apart(first, second)
        ]
    assert not close, close
    assert one_letter_apart("mid", "mids") and one_letter_apart("_act", "act") and not one_letter_apart("bid", "ask")
