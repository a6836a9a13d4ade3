"""Extract the solution code from a model's reply, the way EvalPlus's `sanitize` does, with Python's `ast`.

Steps:
1. Pick the code: among the reply's fenced blocks (```python, ```py or unlabelled; shell blocks and
   AutoCoder's execution markers are ignored) the last one that defines the entry point, else the longest
   one; an unterminated last fence (generation cut at the token limit) counts up to the end. A reply with no
   fence at all is treated as code. Code that does not parse is cut to its longest parsable run of lines
   (EvalPlus's `code_extract`).
2. Keep what the entry point needs: every top-level import, then the top-level functions, classes and
   global assignments the entry point reaches through the names it uses (transitively), in source order.
   Test calls, prints, asserts and `if __name__ == "__main__":` blocks are dropped. Without an entry point
   (or when the code does not define it) every definition is kept.

Differences from EvalPlus 0.3.1 (tree-sitter based): a redefined name keeps all its definitions (Python
then uses the last, as it would when running the reply), and a function is kept even without a `return`.

What this module deliberately does not do: run or repair code.
"""

from __future__ import annotations

import ast
import re

from interpreter.protocol import OUTPUT_START, OUTPUT_STOP, RUN_START, RUN_STOP

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.S | re.M)
_PYTHON_LANGS = {"", "python", "py", "python3", "py3", "pycon", "ipython"}
# Bounds the fallback search for the longest parsable run of lines (quadratic in the number of lines).
_MAX_PARSE_ATTEMPTS = 4000


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def fenced_blocks(text: str) -> list[str]:
    """The python-like fenced blocks of `text`, in order."""
    for token in (RUN_START, RUN_STOP, OUTPUT_START, OUTPUT_STOP):
        text = text.replace(token, "\n")
    return [body for lang, body in _FENCE.findall(text) if lang.lower() in _PYTHON_LANGS]


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b", code, re.M) is not None
    return name in _top_level_names(tree)


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        names.update(_defined_names(node))
    return names


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return [node.target.id]
    return []


def longest_parsable(code: str) -> str:
    """The longest run of consecutive lines that parses (counting non-blank lines), as EvalPlus's code_extract."""
    lines = code.split("\n")
    best, best_len, attempts = "", 0, 0
    starts = [i for i, line in enumerate(lines) if line.strip() and not line[0].isspace()]
    for i in starts:
        for j in range(len(lines), i, -1):
            size = sum(1 for line in lines[i:j] if line.strip())
            if size <= best_len:
                break
            attempts += 1
            if attempts > _MAX_PARSE_ATTEMPTS:
                return best
            candidate = "\n".join(lines[i:j])
            if _parses(candidate):
                best, best_len = candidate, size
                break
    return best


def pick_code(text: str, entry_point: str | None) -> str:
    """Step 1 of the module docstring: the code block that holds the solution."""
    blocks = [b for b in fenced_blocks(text) if b.strip()]
    if not blocks:
        return text
    if entry_point:
        defining = [b for b in blocks if _defines(b, entry_point)]
        if defining:
            return defining[-1]
    return max(blocks, key=lambda b: len(b.strip()))


def _used_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _segment(lines: list[str], node: ast.stmt) -> str:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(lines[start - 1 : node.end_lineno])


def keep_dependencies(code: str, entry_point: str | None) -> str:
    """Step 2 of the module docstring; `code` must parse."""
    tree = ast.parse(code)
    lines = code.split("\n")
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    definitions = [(n, _defined_names(n)) for n in tree.body if _defined_names(n)]
    defined = {name for _, names in definitions for name in names}
    if entry_point and entry_point in defined:
        uses: dict[str, set[str]] = {}
        for node, names in definitions:
            for name in names:
                uses.setdefault(name, set()).update(_used_names(node))
        reached, queue = {entry_point}, [entry_point]
        while queue:
            for name in uses.get(queue.pop(), ()):
                if name in defined and name not in reached:
                    reached.add(name)
                    queue.append(name)
        definitions = [(n, names) for n, names in definitions if reached.intersection(names)]
    kept = sorted(
        imports + [n for n, _ in definitions],
        key=lambda n: (not isinstance(n, ast.Import | ast.ImportFrom), n.lineno),
    )
    seen, parts = set(), []
    for node in kept:
        if node.lineno not in seen:  # `import a; import b` on one line: once
            seen.add(node.lineno)
            parts.append(_segment(lines, node))
    return "\n".join(parts)


def sanitize(reply: str, entry_point: str | None = None) -> str:
    """The solution code in `reply`: the entry point and what it depends on (see the module docstring)."""
    code = pick_code(reply, entry_point)
    if not _parses(code):
        code = longest_parsable(code) or code
    if not _parses(code):
        return code.strip()
    kept = keep_dependencies(code, entry_point).strip()
    return kept or code.strip()
