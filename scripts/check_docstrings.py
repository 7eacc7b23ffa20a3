"""List the public functions, classes and methods of the job, the models and the CLI that have no
docstring (the house rule: every public definition says its inputs, outputs and errors).

    python scripts/check_docstrings.py            # prints file:line name, exits 1 if any
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOTS = ["tagger", "udfs", "models", "jobs"]


def missing(path: Path) -> list[str]:
    """`file:line name` for each public def/class in `path` (module level and class bodies) that has
    no docstring. Private names (leading underscore) and click command callbacks are skipped: a
    command's help text is its docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []

    def visit(nodes, prefix=""):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name.startswith("_"):
                    continue
                decorators = [ast.unparse(d) for d in node.decorator_list]
                is_command = any("command" in d or "group" in d for d in decorators)
                if ast.get_docstring(node) is None and not is_command:
                    out.append(f"{path}:{node.lineno} {prefix}{node.name}")
                if isinstance(node, ast.ClassDef):
                    visit(node.body, prefix=f"{node.name}.")

    visit(tree.body)
    return out


def main() -> int:
    """Print every missing docstring; exit status 1 if there is any."""
    rows = [row for root in ROOTS for path in sorted(Path(root).rglob("*.py")) for row in missing(path)]
    print("\n".join(rows) if rows else "every public definition has a docstring")
    return 1 if rows else 0


if __name__ == "__main__":
    sys.exit(main())
