"""DAG ids that hand-written DAG files in the DAGs folder define, so a spec cannot take one of them.

Two files defining one DAG id make Airflow flip between them, each parse replacing the other's DAG. A spec's
DAG is built inside the hitl DAG file, so Airflow cannot say which file is wrong; the loader refuses the spec
instead (``hitl.spec.loader.load_specs``), and the factory shows it as its ``hitl_invalid__`` stand-in.

Nothing is imported or run: each ``.py`` file is read (at most ``MAX_FILE_BYTES``), and only a file whose words
include one of the spec ids is parsed with ``ast``, looking for what defines a DAG id in Airflow's own forms:
``DAG("id")`` / ``DAG(dag_id="id")`` (``with DAG(...)`` too), and a function decorated with ``@dag`` (its
``dag_id=``, else the function's name). A file that only names the id elsewhere (``trigger_dag_id="id"``,
an ``ExternalTaskSensor``) defines nothing and is not counted. Hidden folders, ``__pycache__`` and files
that do not parse are skipped. ``.airflowignore`` is not read: a file it ignores is still counted.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

MAX_FILE_BYTES = 1 << 20  # a DAG file larger than this is not read (Airflow would take long over it too)
MAX_FILES = 10_000  # files looked at under one folder; past it the rest are skipped
_WORD = re.compile(rb"[A-Za-z0-9_.-]+")  # the characters of an Airflow DAG id


def _callee(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _text(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def defined_dag_ids(source: str) -> Iterator[tuple[str, int]]:
    """(DAG id, line) for each DAG the Python ``source`` defines with a literal id."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _callee(node.func) == "DAG":
            given = _text(_keyword(node, "dag_id")) or (_text(node.args[0]) if node.args else None)
            if given:
                yield given, node.lineno
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                call = decorator if isinstance(decorator, ast.Call) else None
                if _callee(call.func if call else decorator) != "dag":
                    continue
                explicit = _keyword(call, "dag_id") if call else None
                given = _text(explicit) if explicit is not None else node.name
                if given:
                    yield given, node.lineno


def _python_files(folder: Path) -> Iterator[Path]:
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py") and not name.startswith("."):
                seen += 1
                if seen > MAX_FILES:
                    return
                yield Path(root) / name


def hand_written_dag_ids(folder: Path, ids: Iterable[str], *, skip: Iterable[Path] = ()) -> dict[str, tuple[Path, int]]:
    """Which of ``ids`` a ``.py`` file under ``folder`` (other than ``skip``) defines: id -> (file, line)."""
    wanted = {i.encode() for i in ids}
    if not wanted or not folder.is_dir():
        return {}
    skipped = {p.resolve() for p in skip}
    found: dict[str, tuple[Path, int]] = {}
    for path in _python_files(folder):
        try:
            if path.resolve() in skipped or path.stat().st_size > MAX_FILE_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if not wanted.intersection(_WORD.findall(data)):
            continue  # the cheap look: none of the ids is even a word of this file
        try:
            defined = list(defined_dag_ids(data.decode("utf-8", errors="replace")))
        except (SyntaxError, ValueError, RecursionError):
            continue  # Airflow reports a file that does not parse itself
        for dag_id, line in defined:
            if dag_id.encode() in wanted and dag_id not in found:
                found[dag_id] = (path, line)
    return found
