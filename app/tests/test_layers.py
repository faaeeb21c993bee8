"""The service's layers, and which way imports go.

Every module under ``src/morpheus/`` belongs to one layer; a module may import its own
layer and the layers below it, never one above. From the top:

1. the application: ``morpheus.app`` (the factory that puts the sites on their host
   names, wrapped in the middleware) and ``morpheus.asgi`` (what Gunicorn serves);
2. the sites, side by side: ``web`` (storefront, dashboard) and ``api`` (the JSON API,
   with the health routes and the middleware every site is wrapped in); neither imports
   the other;
3. the entry points of the other processes: ``cli`` (the ``morpheus`` command, which
   starts the worker and manages sessions, users and keys), ``gunicorn_conf`` (it names
   the application by a string, never imports it) and ``healthcheck`` (the image's
   probe; it imports nothing of ours);
4. ``services``, the application layer: the use cases and what the sites and the
   command line share. It sits above the worker, as the house style has it: a use case
   queues a job for the worker, the worker never calls a use case; what both need
   (Sentry's set-up) is at the ground;
5. ``worker``: the comic job, the runtime, the reconciler;
6. ``pipeline``: ingest, segmentation, composition, packaging;
7. the infrastructure: ``storage``, ``queue``, ``db`` (with its ``migrations``) and
   ``providers``;
8. the pipeline's data model, ``pipeline.script``: panels and scripts, which providers
   and composition depend on, not on the heuristics that make them;
9. the ground: ``settings`` (with ``database_url``, how it reads the database URLs),
   ``logging``, ``observability``, ``cancellation`` and the package itself (its version).

A module is placed by the longest prefix that names it, so ``pipeline.script`` is in
its own layer and the rest of ``pipeline`` in the pipeline's. Imports inside functions
and under ``TYPE_CHECKING`` count like any other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "morpheus"
ROOT = "morpheus"


@dataclass(frozen=True)
class Layer:
    name: str
    members: tuple[str, ...]
    # Members of a layer import each other freely, unless they stand side by side.
    side_by_side: bool = False


LAYERS: tuple[Layer, ...] = (
    Layer("application", ("morpheus.app", "morpheus.asgi")),
    Layer("sites", ("morpheus.web", "morpheus.api"), side_by_side=True),
    Layer("entry points", ("morpheus.cli", "morpheus.gunicorn_conf", "morpheus.healthcheck")),
    Layer("services", ("morpheus.services",)),
    Layer("worker", ("morpheus.worker",)),
    Layer("pipeline", ("morpheus.pipeline",)),
    Layer(
        "infrastructure",
        (
            "morpheus.storage",
            "morpheus.queue",
            "morpheus.db",
            "morpheus.migrations",
            "morpheus.providers",
        ),
    ),
    Layer("pipeline model", ("morpheus.pipeline.script",)),
    Layer(
        "ground",
        (
            ROOT,
            "morpheus.settings",
            "morpheus.database_url",
            "morpheus.logging",
            "morpheus.observability",
            "morpheus.cancellation",
        ),
    ),
)


@dataclass(frozen=True)
class Place:
    """Where a module stands: its layer's rank (0 at the top) and the member naming it."""

    rank: int
    layer: Layer
    member: str


def place(module: str) -> Place | None:
    """The layer of ``module``: the one whose member is its longest prefix."""
    best: Place | None = None
    for rank, layer in enumerate(LAYERS):
        for member in layer.members:
            # The package itself names only itself: morpheus.x needs a layer of its own.
            named = module == member or (member != ROOT and module.startswith(member + "."))
            if named and (best is None or len(member) > len(best.member)):
                best = Place(rank, layer, member)
    return best


def module_name(path: Path, source: Path = SOURCE) -> str:
    parts = list(path.relative_to(source.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_package(source: Path = SOURCE) -> dict[str, str]:
    """Every module of the package, by name, with its source text."""
    return {module_name(path, source): path.read_text() for path in sorted(source.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    module: str
    line: int


def imports(module: str, text: str, known: set[str]) -> Iterator[Import]:
    """What ``module`` imports, ours or not, with the line (``from pkg import sub`` names
    the submodule when ``sub`` is one)."""
    package = module if f"{module}.__init__" in known else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(submodule if submodule in known else base, node.lineno)


def ours(name: str) -> bool:
    return name == ROOT or name.startswith(ROOT + ".")


def violations(sources: Mapping[str, str], known: set[str] | None = None) -> list[str]:
    """One sentence per import that goes the wrong way, naming the module, the line and
    what it imports; and per module that has no layer."""
    known = set(known or ()) | set(sources)
    problems = []
    for module, text in sorted(sources.items()):
        here = place(module)
        if here is None:
            problems.append(f"{module} has no layer: add it to LAYERS in tests/test_layers.py")
            continue
        for found in sorted(set(imports(module, text, known)), key=lambda i: (i.line, i.module)):
            if not ours(found.module):
                continue
            there = place(found.module)
            if there is None:
                problems.append(
                    f"{module} line {found.line} imports {found.module}, which has no layer"
                )
            elif there.rank < here.rank:
                problems.append(
                    f"{module} ({here.layer.name}) line {found.line} imports {found.module} "
                    f"({there.layer.name}): a lower layer must not import a higher one"
                )
            elif (
                there.rank == here.rank and here.layer.side_by_side and there.member != here.member
            ):
                problems.append(
                    f"{module} line {found.line} imports {found.module}: {here.member} and "
                    f"{there.member} stand side by side and must not import each other"
                )
    return problems


def cycles(sources: Mapping[str, str], known: set[str] | None = None) -> list[str]:
    """One sentence per circle of modules that import each other (within a layer, where
    the layers cannot see it)."""
    known = set(known or ()) | set(sources)
    graph = {
        module: sorted({found.module for found in imports(module, text, known)} & set(sources))
        for module, text in sources.items()
    }
    found: set[tuple[str, ...]] = set()
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> None:
        path.append(module)
        for target in graph[module]:
            if target in path:
                loop = path[path.index(target) :]
                start = loop.index(min(loop))
                found.add(tuple(loop[start:] + loop[:start]))
            elif target not in done:
                visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module)
    return [" -> ".join([*loop, loop[0]]) + ": a circle of imports" for loop in sorted(found)]


def known_modules(sources: Mapping[str, str]) -> set[str]:
    """Module names, with ``<package>.__init__`` marking the packages."""
    packages = {
        module_name(path) + ".__init__" for path in SOURCE.rglob("__init__.py") if path.is_file()
    }
    return set(sources) | packages


# --- the package itself ------------------------------------------------------------------


def test_every_import_of_the_service_goes_down_its_layers() -> None:
    sources = read_package()
    assert "morpheus.services.submission" in sources  # the tree was found
    problems = violations(sources, known_modules(sources))
    assert not problems, "\n".join(problems)


def test_no_modules_import_each_other_in_a_circle() -> None:
    sources = read_package()
    problems = cycles(sources, known_modules(sources))
    assert not problems, "\n".join(problems)


def test_every_module_has_a_layer() -> None:
    assert [module for module in read_package() if place(module) is None] == []


# --- the check itself --------------------------------------------------------------------

REAL = read_package()
KNOWN = known_modules(REAL)

ALLOWED = [
    pytest.param("morpheus.web.storefront", "from morpheus.services import comics\n", id="down"),
    pytest.param("morpheus.api.comics", "from morpheus.api.auth import x\n", id="same-package"),
    pytest.param("morpheus.db.comics", "from morpheus.db.models import Comic\n", id="same-layer"),
    pytest.param(
        "morpheus.providers.base", "from morpheus.pipeline.script import Panel\n", id="model"
    ),
    pytest.param("morpheus.app", "from morpheus.web.app import x\nimport morpheus.api\n", id="top"),
    pytest.param("morpheus.worker.runtime", "import os\nfrom fastapi import X\n", id="not-ours"),
    pytest.param("morpheus.cli", "def f():\n    from morpheus.worker import runtime\n", id="local"),
]


@pytest.mark.parametrize(("module", "text"), ALLOWED)
def test_imports_down_the_layers_pass(module: str, text: str) -> None:
    assert violations({module: text}, KNOWN) == []


REFUSED = [
    pytest.param(
        "morpheus.db.comics",
        "import uuid\n\nfrom morpheus.services import comics\n",
        "morpheus.db.comics (infrastructure) line 3 imports morpheus.services.comics "
        "(services): a lower layer must not import a higher one",
        id="db-imports-services",
    ),
    pytest.param(
        "morpheus.providers.local",
        "from morpheus.pipeline.segment import segment\n",
        "morpheus.providers.local (infrastructure) line 1 imports morpheus.pipeline.segment "
        "(pipeline): a lower layer must not import a higher one",
        id="providers-import-the-heuristics",
    ),
    pytest.param(
        "morpheus.worker.runtime",
        "def main():\n    from morpheus.services.errors import ServiceError\n",
        "morpheus.worker.runtime (worker) line 2 imports morpheus.services.errors "
        "(services): a lower layer must not import a higher one",
        id="worker-imports-services-in-a-function",
    ),
    pytest.param(
        "morpheus.services.sessions",
        "from morpheus import cli\n",
        "morpheus.services.sessions (services) line 1 imports morpheus.cli "
        "(entry points): a lower layer must not import a higher one",
        id="services-import-the-cli",
    ),
    pytest.param(
        "morpheus.settings",
        "from . import db\n",
        "morpheus.settings (ground) line 1 imports morpheus.db "
        "(infrastructure): a lower layer must not import a higher one",
        id="relative-import",
    ),
    pytest.param(
        "morpheus.web.storefront",
        "from morpheus.api.comics import binary_response\n",
        "morpheus.web.storefront line 1 imports morpheus.api.comics: morpheus.web and "
        "morpheus.api stand side by side and must not import each other",
        id="web-imports-api",
    ),
    pytest.param(
        "morpheus.api.app",
        "import morpheus.web.app\n",
        "morpheus.api.app line 1 imports morpheus.web.app: morpheus.api and "
        "morpheus.web stand side by side and must not import each other",
        id="api-imports-web",
    ),
    pytest.param(
        "morpheus.api.app",
        "from morpheus import app\n",
        "morpheus.api.app (sites) line 1 imports morpheus.app (application): a lower "
        "layer must not import a higher one",
        id="api-imports-the-factory",
    ),
    pytest.param(
        "morpheus.plugins",
        "",
        "morpheus.plugins has no layer: add it to LAYERS in tests/test_layers.py",
        id="module-without-a-layer",
    ),
]


@pytest.mark.parametrize(("module", "text", "message"), REFUSED)
def test_an_import_up_the_layers_is_named_with_its_line(
    module: str, text: str, message: str
) -> None:
    assert violations({module: text}, KNOWN) == [message]


def test_the_package_check_fails_on_a_planted_violation() -> None:
    """The whole package with one bad import added fails, naming that import alone."""
    sources = dict(REAL)
    sources["morpheus.db.comics"] += "\nfrom morpheus.web import dashboard\n"
    line = sources["morpheus.db.comics"].count("\n")
    assert violations(sources, KNOWN) == [
        f"morpheus.db.comics (infrastructure) line {line} imports morpheus.web.dashboard "
        "(sites): a lower layer must not import a higher one"
    ]


def test_a_circle_of_imports_is_named() -> None:
    sources = {
        "morpheus.web.pages": "def page():\n    from morpheus.web.dashboard import login\n",
        "morpheus.web.dashboard": "from morpheus.web.pages import render\n",
    }
    assert cycles(sources, KNOWN) == [
        "morpheus.web.dashboard -> morpheus.web.pages -> morpheus.web.dashboard: "
        "a circle of imports"
    ]
