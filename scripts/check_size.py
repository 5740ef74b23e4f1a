"""Size limits CI watches (as tinygrad's CI watches its line count): no function in src/tunelab
longer than MAX_FUNCTION lines, and the training loop, a file a reader follows top to bottom, under
MAX_LOOP lines. Prints the longest functions; exits 1 over a limit."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION = 50
MAX_LOOP = 300
LOOP = ROOT / "src" / "tunelab" / "engine" / "trainer.py"


def function_lengths() -> list[tuple[int, str]]:
    rows = []
    for path in sorted((ROOT / "src" / "tunelab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                end = node.end_lineno or node.lineno
                rows.append((end - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return sorted(rows, reverse=True)


def main() -> int:
    rows = function_lengths()
    loop = len(LOOP.read_text().splitlines())
    print(f"longest functions: {', '.join(f'{w} ({n})' for n, w in rows[:3])}; {LOOP.relative_to(ROOT)}: {loop} lines")
    over = [f"{w}: {n} lines (limit {MAX_FUNCTION})" for n, w in rows if n > MAX_FUNCTION]
    if loop > MAX_LOOP:
        over.append(f"{LOOP.relative_to(ROOT)}: {loop} lines (limit {MAX_LOOP})")
    for line in over:
        print(line, file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
