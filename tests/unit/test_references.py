"""Every path and dotted name that the code's docstrings and comments, and the README, cite
exists: a module moved or renamed leaves no pointer to where it used to be."""

from __future__ import annotations

import ast
import importlib
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p
    for top in ("models", "streams", "tests", "scripts")
    for p in (ROOT / top).rglob("*")
    if p.suffix in (".py", ".lua", ".sh") and "__pycache__" not in p.parts
)
CITING = [*SOURCES, ROOT / "README.md"]

PATH = re.compile(
    r"(?<![\w/.-])((?:models|streams|tests|docs|scripts|monitoring)/[\w/.-]*[\w/])(?![\w*-])"
)
# Sphinx roles and backticked dotted names that start at one of the project's packages.
NAME = re.compile(r"(?::\w+:`~?|``?)((?:models|streams)(?:\.\w+)+)`")


#: Paths made at run time, not kept in the repository.
MADE_AT_RUN_TIME = ("monitoring/secrets/",)  # keys `socialrec keys new` writes (gitignored)


def _prose(path: Path) -> str:
    """What a file says in words: a Python file's docstrings and comments (not its string
    literals, which may name files a test makes); any other file whole."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".py":
        return text
    nodes = [n for n in ast.walk(ast.parse(text)) if isinstance(n, DOCUMENTED)]
    docstrings = [doc for n in nodes if (doc := ast.get_docstring(n, clean=False))]
    comments = [
        token.string
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type == tokenize.COMMENT
    ]
    return "\n".join([*docstrings, *comments])


DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _cited(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    found = []
    for path in CITING:
        for match in pattern.finditer(_prose(path)):
            found.append((str(path.relative_to(ROOT)), match.group(1)))
    return sorted(set(found))


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                # A class's annotated field (a dataclass without default) has no attribute.
                fields = getattr(target, "__annotations__", {})
                return attribute in fields
            target = getattr(target, attribute)
        return True
    return False


@pytest.mark.parametrize(("where", "path"), _cited(PATH))
def test_a_cited_path_exists(where: str, path: str) -> None:
    if path.startswith(MADE_AT_RUN_TIME):
        return
    assert (ROOT / path.rstrip(".")).exists(), f"{where} cites {path}, which does not exist"


@pytest.mark.parametrize(("where", "name"), _cited(NAME))
def test_a_cited_name_resolves(where: str, name: str) -> None:
    assert _resolves(name), f"{where} cites {name}, which does not resolve"
