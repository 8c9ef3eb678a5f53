"""Code fingerprints for exact reruns.

The fingerprint of a stage is a hash over the source of its entry module and every ``rdt`` module it imports,
transitively, with comments, docstrings and formatting removed (the AST is hashed). The workflow puts it in each
rule's ``params``, so editing the code of a stage reruns that stage and what depends on it, and editing a comment
reruns nothing.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent


def _module_path(name: str) -> Path | None:
    rel = Path(*name.split("."))
    base = PACKAGE_ROOT.parent
    for cand in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def _parsed(path: Path) -> tuple[str, tuple[str, ...]]:
    """(normalised source, rdt modules it imports) of one file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    imports: set[str] = set()
    pkg = ".".join(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if path.name == "__init__.py":
        pkg = pkg.rsplit(".", 1)[0] + ".__init__"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(a.name for a in node.names if a.name.split(".")[0] == "rdt")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: -node.level]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "rdt":
                continue
            imports.add(mod)
            imports.update(f"{mod}.{a.name}" for a in node.names)  # `from rdt.model import runner`
    text = ast.unparse(_strip_docstrings(tree))
    return text, tuple(sorted(imports))


def closure(entry: str) -> list[str]:
    """``entry`` and every rdt module it imports, transitively (sorted)."""
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_path(name)
        if path is None:
            continue
        seen[name] = path
        todo.extend(_parsed(path)[1])
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # the package __init__s run on import too
    return sorted(seen)


def fingerprint(*entries: str) -> str:
    """Short hash of the normalised source of ``entries`` and their rdt imports."""
    h = hashlib.sha256()
    for name in sorted(set(m for e in entries for m in closure(e))):
        h.update(name.encode() + b"\0" + _parsed(_module_path(name))[0].encode() + b"\0")
    return h.hexdigest()[:16]


def add_arguments(p) -> None:
    p.add_argument("modules", nargs="+", help="entry modules, e.g. rdt.training.command")
    p.add_argument("--list", action="store_true", help="list the modules that the fingerprint covers")


def main(args) -> int:
    if args.list:
        for entry in args.modules:
            print("\n".join(closure(entry)))
    print(fingerprint(*args.modules))
    return 0
