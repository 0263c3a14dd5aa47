"""KodCode: the task's data and its validator (the candidate against the row's pytest file).

Data: the hub's ``KodCode/KodCode-Light-RL-10K`` (train split) with the paper's protocol, a
seeded random sample of 1,000 problems split 80/20 into train/test; or local files
(``data_files=``) in the same row format (``question_id, question, solution, test,
test_info``), e.g. ``../shared/data/kodcode/kodcode_prefill_sample.jsonl``.

Scoring: the code in the core's reply becomes ``solution.py``, the row's ``test`` becomes
``test_solution.py`` (it starts ``from solution import *``), and pytest runs in the sandbox
(see :mod:`gcop_env.validators.code` for statuses and rewards).
"""

from __future__ import annotations

import ast
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gcop_env.problem import Problem
from gcop_env.validators.code import CodeValidator
from gcop_env.validators.code_extract import ExtractedCode
from gcop_env.validators.data import read_data_file

KODCODE_HUB_ID = "KodCode/KodCode-Light-RL-10K"
KODCODE_SEED = 0
KODCODE_PROBLEMS = 1000
KODCODE_TRAIN_FRACTION = 0.8
_REQUIRED = ("question_id", "question", "test")
DataFiles = str | Path | Sequence[str | Path] | Mapping[str, str | Path | Sequence[str | Path]]


class KodCodeValidator(CodeValidator):
    """Runs the row's pytest file (``problem.reference``) against the code in the reply.

    Args: see :class:`~gcop_env.validators.code.CodeValidator` (``sandbox="auto"``,
    ``timeout=10.0``, ``partial_credit=False``, ``infra_retries=2``, ``sandbox_options``).
    """

    def program_files(self, problem: Problem, extracted: ExtractedCode, output: str) -> dict[str, str]:
        return {"solution.py": extracted.code, "test_solution.py": str(problem.reference)}


# --------------------------------------------------------------------------------- loading


def load_kodcode(
    split: str = "test",
    data_files: DataFiles | None = None,
    *,
    seed: int = KODCODE_SEED,
    n_problems: int = KODCODE_PROBLEMS,
    hub_id: str = KODCODE_HUB_ID,
) -> list[Problem]:
    """KodCode problems of ``split`` (``"train"``, ``"test"`` or ``"all"``).

    Without ``data_files``: the hub dataset ``hub_id``; ``n_problems`` of its rows drawn with
    ``random.Random(seed)``, the first 80% of the draw is train, the rest test. With
    ``data_files`` as a path or list of paths (``.jsonl``, ``.jsonl.gz``, ``.json``,
    ``.parquet``): the same protocol on those rows. With a dict ``{split: path(s)}``: that split's
    files as they are. A corrupt row raises ``ValueError`` naming the file and the row.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"unknown KodCode split {split!r}; use 'train', 'test' or 'all'")
    if isinstance(data_files, Mapping):
        if split == "all":
            paths = [p for value in data_files.values() for p in _as_list(value)]
        elif split in data_files:
            paths = _as_list(data_files[split])
        else:
            raise ValueError(f"data_files has no {split!r} split (it has {sorted(data_files)})")
        return _problems(_read_files(paths))
    rows = _read_files(_as_list(data_files)) if data_files is not None else _read_hub(hub_id)
    order = random.Random(seed).sample(range(len(rows)), min(n_problems, len(rows)))
    cut = int(round(len(order) * KODCODE_TRAIN_FRACTION))
    chosen = {"train": order[:cut], "test": order[cut:], "all": order}[split]
    return _problems([rows[i] for i in chosen])


def _as_list(value: Any) -> list[str | Path]:
    return [value] if isinstance(value, (str, Path)) else list(value)


def _read_hub(hub_id: str) -> list[tuple[str, dict[str, Any]]]:
    import datasets

    try:
        dataset = datasets.load_dataset(hub_id, split="train")
    except Exception as exc:
        raise RuntimeError(
            f"cannot load {hub_id} from the Hugging Face hub ({exc.__class__.__name__}: {exc}). "
            "Offline, pass local files instead: data_files='path/to/kodcode.jsonl' "
            "(rows with question_id, question, solution, test, test_info)."
        ) from exc
    return [(f"{hub_id} row {i}", dict(row)) for i, row in enumerate(dataset)]


def _read_files(paths: Iterable[str | Path]) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"KodCode data file {path} does not exist")
        rows.extend(read_data_file(path))  # read directly (no stale cache); errors name file and line
    return rows


def _problems(rows: list[tuple[str, dict[str, Any]]]) -> list[Problem]:
    problems = []
    seen: dict[str, str] = {}
    for where, row in rows:
        problem = _problem(where, row)
        if problem.task_id in seen:
            raise ValueError(f"{where}: question_id {problem.task_id!r} repeats {seen[problem.task_id]}")
        seen[problem.task_id] = where
        problems.append(problem)
    return problems


def _problem(where: str, row: Any) -> Problem:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    qid = row.get("question_id")
    label = f"{where} (question_id={qid!r})"
    for name in _REQUIRED:
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise ValueError(f"{label}: field {name!r} is missing or not a non-empty string")
    test = row["test"]
    try:
        tree = ast.parse(test)
    except SyntaxError as exc:
        raise ValueError(f"{label}: field 'test' is not valid Python ({exc.msg}, line {exc.lineno})") from exc
    imported = _names_imported_from_solution(tree)
    test_info = row.get("test_info") or []
    if isinstance(test_info, str):
        try:
            test_info = json.loads(test_info)
        except json.JSONDecodeError:
            test_info = []
    declarations = [str(t["function_declaration"]).strip() for t in test_info if isinstance(t, dict) and t.get("function_declaration")]
    functions = [str(t["function_name"]) for t in test_info if isinstance(t, dict) and t.get("function_name")]
    entry_point = functions[0] if functions else next((n for n in imported if not n[:1].isupper()), imported[0] if imported else None)
    question = row["question"].rstrip()
    notes = []
    if declarations and entry_point and f"def {entry_point}" not in question:
        notes.append(f"Note that the function declaration is `{declarations[0]}`.")
    others = [n for n in imported if n != entry_point and n not in question]
    if others:
        notes.append("The tests also use: " + ", ".join(f"`{n}`" for n in others) + " (define them in your code).")
    if notes:
        question = question + "\n\n" + " ".join(notes)
    metadata = {
        "entry_point": entry_point,
        "test_info": test_info,
        "required_names": imported,
        "raw_question": row["question"],
        **{k: row[k] for k in ("style", "subset", "gpt_difficulty", "gpt_pass_percentage") if k in row},
    }
    solution = row.get("solution")
    return Problem(
        task_id=str(qid),
        question=question,
        reference=test,
        solution=solution if isinstance(solution, str) else None,
        metadata=metadata,
    )


def _names_imported_from_solution(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "solution":
            for alias in node.names:
                if alias.name != "*" and alias.name not in names:
                    names.append(alias.name)
    return names
