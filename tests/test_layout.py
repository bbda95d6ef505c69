"""The package layout: one home for bulk execution, no import cycles through dream.io or
dream.bulk, and every import path that SDK 0.5.0 code (and ours before the move) uses."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import dream

SRC = Path(dream.__file__).resolve().parent.parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "dream").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _import_graph() -> dict[str, set[str]]:
    """Module -> the dream modules it imports anywhere in its text: at the top, inside
    functions (lazy imports) and under TYPE_CHECKING alike.

    The sources are parsed in a fresh interpreter: CPython 3.11 before 3.11.8 keeps the
    AST converter's recursion depth in state shared by every thread (gh-106905), so a
    thread an earlier test left running (Ray's, uvicorn's) that builds an AST at the same
    moment makes `ast.parse` here raise "SystemError: AST constructor recursion depth
    mismatch" (seen in CI on 3.11.7)."""
    done = subprocess.run([sys.executable, __file__], capture_output=True, text=True, check=True, timeout=120)
    return {name: set(targets) for name, targets in json.loads(done.stdout).items()}


def _parse_import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    targets.add(child if child in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_runs_through_io_or_bulk() -> None:
    graph = _import_graph()
    assert "dream.io.sinks.dir" not in graph["dream.io.types"]
    bad = [c for c in _cycles(graph) if any(m.startswith(("dream.io", "dream.bulk")) for m in c)]
    assert bad == []


def test_bulk_execution_has_one_home() -> None:
    bulk = {p.stem for p in (SRC / "dream" / "bulk").glob("*.py")}
    assert {"rows", "run", "threads", "ray", "records", "estimate"} <= bulk
    assert not (SRC / "dream" / "_bulk_ray.py").exists()
    assert not (SRC / "dream" / "io" / "_records.py").exists()
    # The public faces hold no runner logic of their own.
    assert len((SRC / "dream" / "ray.py").read_text().splitlines()) < 80
    assert len((SRC / "dream" / "_bulk.py").read_text().splitlines()) < 40


def test_old_import_paths_still_work() -> None:
    import dream._bulk
    import dream.io
    import dream.io.types
    from dream.bulk.estimate import CostEstimate, estimate_cost_for, estimate_cost_for_async
    from dream.bulk.run import FailedRow, PredictManyResult

    # sdk-surface §2/§3: 0.5.0 code reaches these in dream._bulk and at the top level.
    assert dream._bulk.estimate_cost_for is estimate_cost_for
    assert dream._bulk.estimate_cost_for_async is estimate_cost_for_async
    assert dream._bulk.PredictManyResult is dream.PredictManyResult is PredictManyResult
    assert dream._bulk.FailedRow is dream.FailedRow is FailedRow
    assert dream._bulk.CostEstimate is dream.CostEstimate is CostEstimate
    assert dream.io.types.RolloutSink is dream.io.RolloutSink
    for name in dream.io.__all__:
        assert getattr(dream.io, name) is not None


def test_sink_factories_build_the_built_in_sinks(tmp_path: Path) -> None:
    from dream.io import DirRolloutSink, RolloutSink

    sink = RolloutSink.dir(tmp_path / "out")
    assert isinstance(sink, DirRolloutSink) and isinstance(sink, RolloutSink)
    assert sorted(RolloutSink._kinds) == ["dir", "hf", "lerobot", "s3"]


def test_dream_ray_face_without_importing_ray_eagerly() -> None:
    # `import dream.io` / `dream.bulk` must not start Ray or load the runner modules.
    code = (
        "import sys, dream.io, dream.bulk\n"
        "print(sorted(m for m in ('ray', 'dream.bulk.ray', 'dream.bulk.threads', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


if __name__ == "__main__":
    print(json.dumps({name: sorted(t) for name, t in _parse_import_graph().items()}))
