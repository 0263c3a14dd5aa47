"""Table 1 and Figure 1 as a view of saved evaluation runs.

Reads only each run dir's ``summary.json`` (the condition and its metrics) and ``records.jsonl``
(per-problem outcomes, for the paired test); nothing is re-run or re-scored. Writes:

- ``table.md``: per task, the paper's Table 1 layout: a *baselines* block (core-only, ICL) and a
  *guided generation* block (guided, pre-written strategies), one row per condition: core, guide,
  recipe, accuracy with its 95% interval, executability α̂, $/problem, tokens/problem, and the
  two-sided p-value of McNemar's exact test against the core-only run of the same core on the
  same problems (pairs: sample 0 of each task_id scored in both runs).
- ``reward_cost.png``: Figure 1, accuracy against total cost per problem, one labelled point per
  condition with its interval, log cost axis (symlog near zero so that free local runs still show).
- ``report.json``: every number in the table, with the paired counts behind each p-value.
- ``turns.png`` (when a run is multi-turn, ``gcop eval --max-turns N``): per task, the solve rate
  after each turn and against the cumulative cost after each turn, one line per condition with
  Wilson 95% intervals (the paper's Fig. 3 view, for trained guides); the table's *Turns* column
  gives each run's ``max_turns`` (:mod:`gcop_env.evaluation.multiturn`).

The accuracy in ``summary.json`` is checked against the records it claims to summarise; a run
dir whose two files disagree is refused rather than shown.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import parse_qsl

from gcop_env.utils.files import write_text_atomic
from gcop_env.evaluation.stats import McNemarResult, mcnemar_exact, paired_bootstrap

SCHEMA = 1
BASELINE_KINDS = ("core-only", "icl")
GUIDED_KINDS = ("guided", "strategies")
KIND_ORDER = {kind: i for i, kind in enumerate(BASELINE_KINDS + GUIDED_KINDS)}
_ACCURACY_TOLERANCE = 1e-9


class ReportError(ValueError):
    """A run dir cannot be reported (missing or garbled file, mixed tasks); the message says which and why."""


@dataclass
class PairedTest:
    """McNemar's exact test of one condition against its core-only reference."""

    reference: str                     # run dir of the core-only run
    n_pairs: int
    both: int
    only_reference: int
    only_condition: int
    neither: int
    p_value: float | None              # None when there is nothing to pair
    # accuracy(condition) - accuracy(reference) on the paired problems, with a paired-bootstrap 95% CI
    difference: float | None = None
    difference_ci95: tuple[float, float] | None = None

    @classmethod
    def from_outcomes(cls, reference: str, reference_outcomes: list[bool], outcomes: list[bool]) -> "PairedTest":
        result: McNemarResult = mcnemar_exact(reference_outcomes, outcomes)
        test = cls(reference=reference, n_pairs=result.n_pairs, both=result.both, only_reference=result.only_a,
                   only_condition=result.only_b, neither=result.neither,
                   p_value=result.p_value if result.n_pairs else None)
        if result.n_pairs:
            # Fixed seed: the same run dirs give the same report.
            boot = paired_bootstrap([float(x) for x in reference_outcomes], [float(x) for x in outcomes], seed=0)
            test.difference, test.difference_ci95 = boot.difference, boot.ci95
        return test


@dataclass
class RunView:
    """One run dir as the report sees it: its summary and the sample-0 outcome of each problem."""

    run_dir: str
    task: str
    split: str
    name: str
    kind: str
    core: str
    guide: str | None
    recipe: str | None
    metrics: dict[str, Any]
    outcomes: dict[str, bool] = field(repr=False)   # task_id -> success of sample 0 (infra rows left out)
    paired: PairedTest | None = None
    paired_note: str | None = None
    # task_id -> the problem's fingerprint as its sample-0 row recorded it (None: a row from before they were)
    fingerprints: dict[str, str | None] = field(default_factory=dict, repr=False)
    data_files: str | None = None
    label: str = ""  # the name in the table and the figure: the condition's, or with its run dir when two share it

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    @property
    def total_usd(self) -> float:
        return float(self.metrics["cost_per_problem"]["total"]["usd"])

    @property
    def total_tokens(self) -> float:
        return float(self.metrics["cost_per_problem"]["total"]["tokens"])

    @property
    def max_turns(self) -> int:
        """Guide turns per episode (1: a single-turn run)."""
        turns = self.metrics.get("turns")
        return int(turns["max_turns"]) if isinstance(turns, dict) else 1


def _fail(run_dir: Path, what: str) -> ReportError:
    return ReportError(f"cannot report {run_dir}: {what}")


def _need(mapping: dict, key: str, run_dir: Path, where: str):
    if not isinstance(mapping, dict) or key not in mapping:
        raise _fail(run_dir, f"{where} has no {key!r} field (is it a `gcop eval --out` run dir of schema {SCHEMA}?)")
    return mapping[key]


def _number(value: Any, where: str, run_dir: Path, *, lo: float = 0.0, hi: float | None = None,
            optional: bool = False) -> float | None:
    """A number of summary.json: finite, in [lo, hi] (a NaN or a string cost would print as $nan or
    break the figure); None only when ``optional``."""
    if value is None and optional:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and value >= lo and (hi is None or value <= hi)
    if not ok:
        bounds = f"in [{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
        raise _fail(run_dir, f"summary.json {where} is {value!r}, not a finite number {bounds}"
                             + (" (or null)" if optional else "") + "; the file was edited or damaged")
    return float(value)


def _check_metrics(metrics: dict, run_dir: Path) -> None:
    accuracy = _number(metrics["accuracy"], "metrics.accuracy", run_dir, hi=1.0, optional=True)
    ci = metrics["accuracy_ci95"]
    if accuracy is not None or ci is not None:
        if not isinstance(ci, list) or len(ci) != 2:
            raise _fail(run_dir, f"summary.json metrics.accuracy_ci95 is {ci!r}, not [low, high]"
                                 + (f" (accuracy is {accuracy})" if accuracy is not None else ""))
        lo, hi = (_number(v, "metrics.accuracy_ci95", run_dir, hi=1.0) for v in ci)
        if lo > hi:
            raise _fail(run_dir, f"summary.json metrics.accuracy_ci95 is {ci!r}: its low end is above its high end")
    _number(metrics.get("executability"), "metrics.executability", run_dir, hi=1.0, optional=True)
    n_infra = metrics["n_infra"]
    if isinstance(n_infra, bool) or not isinstance(n_infra, int) or n_infra < 0:
        raise _fail(run_dir, f"summary.json metrics.n_infra is {n_infra!r}, not a count")
    for role, cost in metrics["cost_per_problem"].items():
        if not isinstance(cost, dict):
            raise _fail(run_dir, f"summary.json metrics.cost_per_problem.{role} is {cost!r}, not an object")
        for key in ("usd", "tokens"):
            if key in cost or role == "total":
                _number(cost.get(key), f"metrics.cost_per_problem.{role}.{key}", run_dir)


def _records(records_path: Path, run_dir: Path):
    """(line number, row) of records.jsonl; a line that is not UTF-8 or not JSON is an error naming it."""
    with records_path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _fail(run_dir, f"records.jsonl line {number} is not valid UTF-8 (byte {exc.start}); the file "
                                     f"was edited or damaged") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fail(run_dir, f"records.jsonl line {number} is not valid JSON ({exc.msg}); the file is "
                                     f"truncated or edited: re-run the same `gcop eval` command to complete it") from None
            yield number, row


def load_run(run_dir: Path | str) -> RunView:
    """Read and check one run dir; any problem is a :class:`ReportError` naming the file and line."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise _fail(run_dir, "it is not a directory (give the run dir written by `gcop eval --out DIR`)")
    summary_path, records_path = run_dir / "summary.json", run_dir / "records.jsonl"
    for path in (summary_path, records_path):
        if not path.is_file():
            raise _fail(run_dir, f"{path.name} is missing (a finished `gcop eval --out {run_dir}` writes it)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(run_dir, f"summary.json is not valid JSON ({exc})") from None
    if not isinstance(summary, dict):
        raise _fail(run_dir, "summary.json is not a JSON object")
    if summary.get("schema") != SCHEMA:
        raise _fail(run_dir, f"summary.json has schema {summary.get('schema')!r}; this report reads schema {SCHEMA}")
    condition = _need(summary, "condition", run_dir, "summary.json")
    metrics = _need(summary, "metrics", run_dir, "summary.json")
    task, split = _need(summary, "task", run_dir, "summary.json"), _need(summary, "split", run_dir, "summary.json")
    kind = _need(condition, "kind", run_dir, "summary.json condition")
    if kind not in KIND_ORDER:
        raise _fail(run_dir, f"summary.json condition kind {kind!r} is not one of {list(KIND_ORDER)}")
    if not isinstance(condition, dict):
        raise _fail(run_dir, "summary.json condition is not a JSON object")
    for key in ("accuracy", "accuracy_ci95", "n_infra", "cost_per_problem"):
        _need(metrics, key, run_dir, "summary.json metrics")
    if not isinstance(metrics["cost_per_problem"], dict):
        raise _fail(run_dir, "summary.json metrics.cost_per_problem is not a JSON object")
    for key in ("usd", "tokens"):
        _need(_need(metrics["cost_per_problem"], "total", run_dir, "summary.json cost_per_problem"), key, run_dir,
              "summary.json cost_per_problem.total")
    _check_metrics(metrics, run_dir)

    latest: dict[tuple[str, int], dict] = {}
    for number, row in _records(records_path, run_dir):
        if not isinstance(row, dict):
            raise _fail(run_dir, f"records.jsonl line {number} is not a JSON object")
        for key in ("task", "task_id", "sample", "success"):
            if key not in row:
                raise _fail(run_dir, f"records.jsonl line {number} has no {key!r} field")
        if row["task"] != task:
            raise _fail(run_dir, f"records.jsonl line {number} is a {row['task']!r} record but summary.json "
                                 f"says task {task!r}: the files come from different runs")
        if row["success"] not in (True, False, None):
            raise _fail(run_dir, f"records.jsonl line {number} has success={row['success']!r}; expected "
                                 f"true, false or null")
        sample = row["sample"]
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
            raise _fail(run_dir, f"records.jsonl line {number} has sample={sample!r}; expected an integer >= 0")
        if not isinstance(row["task_id"], (str, int)) or isinstance(row["task_id"], bool):
            raise _fail(run_dir, f"records.jsonl line {number} has task_id={row['task_id']!r}; expected a string")
        # A resumed run appends; a later row for the same (problem, sample) supersedes an earlier one.
        latest[(str(row["task_id"]), sample)] = row
    outcomes = {task_id: row["success"] for (task_id, sample), row in latest.items()
                if sample == 0 and row["success"] is not None}
    fingerprints = {task_id: row.get("problem_sha256") if isinstance(row.get("problem_sha256"), str) else None
                    for (task_id, sample), row in latest.items() if sample == 0}

    # Pass@1 in summary.json is sample 0 of each problem over the scored ones: check it is the records'.
    accuracy = metrics["accuracy"]
    if outcomes:
        wins = sum(outcomes.values())
        from_records = wins / len(outcomes)
        if accuracy is None or abs(float(accuracy) - from_records) > _ACCURACY_TOLERANCE:
            raise _fail(run_dir, f"summary.json accuracy {accuracy} disagrees with records.jsonl "
                                 f"({wins}/{len(outcomes)} scored sample-0 rows = {from_records:.6g}): the run is "
                                 f"unfinished, or the files were edited or come from different runs")
    elif accuracy is not None:
        raise _fail(run_dir, f"summary.json reports accuracy {accuracy} but records.jsonl has no scored sample-0 row")
    turns = metrics.get("turns")
    if turns is not None:  # a multi-turn run: the solve rate after the last turn is the accuracy
        solved = (turns.get("solved_after_turn") or [None]) if isinstance(turns, dict) else [None]
        if accuracy is not None and (solved[-1] is None or abs(float(solved[-1]) - float(accuracy)) > _ACCURACY_TOLERANCE):
            raise _fail(run_dir, f"summary.json's solve rate after the last turn ({solved[-1]}) is not its accuracy "
                                 f"({accuracy}): the files were edited or come from different runs")
    data_files = summary.get("data_files")
    return RunView(run_dir=str(run_dir), task=str(task), split=str(split), name=str(condition.get("name") or kind),
                   kind=kind, core=str(condition.get("core")), guide=condition.get("guide"),
                   recipe=condition.get("recipe"), metrics=metrics, outcomes=outcomes, fingerprints=fingerprints,
                   data_files=None if data_files is None else str(data_files))


@dataclass
class TaskTable:
    """The rows of one (task, split), baselines first, each guided row tested against its core-only run."""

    task: str
    split: str
    rows: list[RunView]

    @property
    def title(self) -> str:
        return f"{self.task} ({self.split})"


def build_tables(runs: list[RunView]) -> list[TaskTable]:
    """Group runs by (task, split) and attach each non-reference row's paired test."""
    groups: dict[tuple[str, str], list[RunView]] = {}
    for run in runs:
        groups.setdefault((run.task, run.split), []).append(run)
    tables = []
    for (task, split), rows in groups.items():
        rows = sorted(rows, key=lambda r: (KIND_ORDER[r.kind], r.core, r.name))
        references: dict[str, RunView] = {}
        for row in rows:
            if row.kind == "core-only":
                references.setdefault(row.core, row)  # the first core-only run of each core is the reference
        _label_duplicates(rows)
        for row in rows:
            reference = references.get(row.core)
            if reference is None:
                row.paired_note = f"no core-only run of core {row.core} on {task} ({split}) was given"
            elif reference is row:
                row.paired_note = "reference"
            else:
                shared = sorted(set(reference.outcomes) & set(row.outcomes))
                other_data = _other_data(reference, row, shared)
                if other_data:
                    row.paired_note = other_data  # pairing by task_id would compare different problems
                    continue
                row.paired = PairedTest.from_outcomes(reference.run_dir, [reference.outcomes[t] for t in shared],
                                                      [row.outcomes[t] for t in shared])
                if not shared:
                    row.paired_note = "no problem scored in both runs"
                elif len(shared) < max(len(reference.outcomes), len(row.outcomes)):
                    row.paired_note = f"paired on the {len(shared)} problems scored in both runs"
        tables.append(TaskTable(task=task, split=split, rows=rows))
    return tables


def _other_data(reference: RunView, row: RunView, shared: list[str]) -> str | None:
    """Why ``row`` cannot be paired with ``reference`` by task_id (their data differ), or None.

    Task ids are positional in many datasets: two runs on different files (or one file edited in
    between) share ids but not problems. Each record carries its problem's fingerprint; where both
    runs have them, they must agree on every shared id. Runs from before fingerprints were recorded
    must at least name the same data files."""
    differ = [t for t in shared if reference.fingerprints.get(t) and row.fingerprints.get(t)
              and reference.fingerprints[t] != row.fingerprints[t]]
    if differ:
        return (f"not paired with {reference.run_dir}: the runs were made on different data ({len(differ)} of the "
                f"{len(shared)} shared task ids hold other problems, e.g. {differ[0]}); compare runs of the same data")
    unchecked = [t for t in shared if not (reference.fingerprints.get(t) and row.fingerprints.get(t))]
    if unchecked and reference.data_files != row.data_files:
        return (f"not paired with {reference.run_dir}: the runs name different data files ({reference.data_files} "
                f"and {row.data_files}) and {len(unchecked)} shared task ids have no problem fingerprint to compare")
    return None


def _label_duplicates(rows: list[RunView]) -> None:
    """Two rows that would read the same in the table (e.g. two core-only runs of one core) get their
    run dirs in their labels, so the reader can tell them apart."""
    seen: dict[tuple, list[RunView]] = {}
    for row in rows:
        seen.setdefault((row.name, short_model_name(row.core), short_model_name(row.guide), row.recipe), []).append(row)
    for same in seen.values():
        if len(same) > 1:
            for row in same:
                row.label = f"{row.name} ({row.run_dir})"


def _percent(value) -> str:
    return "—" if value is None else f"{100 * float(value):.1f}"


def _usd(value: float) -> str:
    """Dollars in plain decimals: ``$0``, ``$0.0000234``, ``$0.00002`` (up to three significant digits
    below a cent, never ``2e-05``), ``$0.0150``."""
    if value == 0:
        return "$0"
    if value >= 0.01:
        return f"${value:.4f}"
    digits = 2 - math.floor(math.log10(value))  # three significant digits, no exponent
    return "$" + f"{value:.{digits}f}".rstrip("0")


def short_model_name(spec: str | None) -> str:
    """A model spec as a table cell: a local model by its file or folder name, not its cache path.

    ``hf:/root/.cache/gcop_env/models?gguf_file=gemma-3-270m-q4_k_m.gguf`` → ``hf:gemma-3-270m-q4_k_m``,
    ``vllm:/models/qwen3-1.7b/`` → ``vllm:qwen3-1.7b``. API models and hub ids (``hf:Qwen/Qwen3-1.7B``)
    are already short and stay as given; ``report.json`` keeps every full spec.
    """
    if not spec or ":" not in spec:
        return spec or "—"
    backend, rest = spec.split(":", 1)
    if backend not in ("hf", "vllm"):
        return spec
    path, _, query = rest.partition("?")
    gguf = dict(parse_qsl(query)).get("gguf_file")
    if gguf:
        return f"{backend}:{PurePath(gguf).name.removesuffix('.gguf')}"
    if path.startswith(("/", "~", "./", "../")) or "\\" in path:
        return f"{backend}:{PurePath(path.rstrip('/')).name or path}"
    return spec


def _p_value(row: RunView) -> str:
    if row.paired_note == "reference":
        return "ref."
    if row.paired is None or row.paired.p_value is None:
        return "—"
    p = row.paired.p_value
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _unpriced_guide(row: RunView) -> bool:
    """A row whose guide's tokens are counted as $0 (a local or unknown guide): rows without a
    guide (core-only, ICL) have nothing unpriced."""
    return row.kind in GUIDED_KINDS and row.metrics.get("guide_priced") is False


def _table_row(row: RunView) -> str:
    m = row.metrics
    lo, hi = m["accuracy_ci95"] or (None, None)
    marks = []
    if _unpriced_guide(row):
        marks.append("†")
    if int(m.get("n_infra") or 0):
        marks.append("‡")
    cells = [row.label, short_model_name(row.core), short_model_name(row.guide), row.recipe or "—",
             f"{_percent(m['accuracy'])} [{_percent(lo)}, {_percent(hi)}]", _percent(m.get("executability")),
             _usd(row.total_usd) + "".join(marks), f"{row.total_tokens:,.0f}", _p_value(row), str(len(row.outcomes)),
             str(row.max_turns)]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


TABLE_HEADER = ("| Condition | Core | Guide | Recipe | Accuracy % [95% CI] | α̂ % | $/problem | tokens/problem "
                "| p vs core-only | n | Turns |\n|---|---|---|---|---|---|---|---|---|---|---|")


def render_markdown(tables: list[TaskTable]) -> str:
    """``table.md``: one Table 1 per (task, split)."""
    out = ["# Evaluation report", ""]
    for table in tables:
        out += [f"## {table.title}", "", TABLE_HEADER]
        for block, kinds in (("Baselines", BASELINE_KINDS), ("Guided generation", GUIDED_KINDS)):
            rows = [r for r in table.rows if r.kind in kinds]
            if rows:
                out.append(f"| **{block}** | | | | | | | | | | |")
                out += [_table_row(r) for r in rows]
        notes = []
        for row in table.rows:
            n_infra = int(row.metrics.get("n_infra") or 0)
            if n_infra:
                notes.append(f"‡ {row.label}: {n_infra} problem(s) hit infrastructure errors and are left out "
                             f"(not counted as wrong); re-run `gcop eval` to retry them.")
            if row.paired_note not in (None, "reference"):
                notes.append(f"{row.label}: {row.paired_note}.")
        if any(_unpriced_guide(r) for r in table.rows):
            notes.append("† the guide's tokens are not priced (a local guide counts $0 unless `--guide-price` is given).")
        out += ["", "Accuracy: Pass@1 (sample 0 of each problem) with its Wilson 95% interval. α̂: executability, "
                    "the mean over problems of the core's success rate over the guide's samples (with one sample it "
                    "equals the guided accuracy). p: two-sided McNemar exact test against the core-only run of the "
                    "same core, paired by problem; the paper reports no significance test. Turns: guide turns per "
                    "problem (more than 1: the guide revised after each failed turn; accuracy is after the last "
                    "turn and $/problem, tokens/problem count every turn)."]
        out += [f"- {n}" for n in notes]
        out.append("")
    return "\n".join(out)


def symlog_threshold(costs: list[float]) -> float:
    positive = [c for c in costs if c > 0]
    return 10 ** math.floor(math.log10(min(positive))) if positive else 1e-6


def plot_reward_cost(tables: list[TaskTable], path: Path | None = None):
    """Figure 1: accuracy against total cost per problem; returns the matplotlib Figure.

    One ``errorbar`` container per condition (label = condition name), in table order, and one
    label per point, in the point's colour, placed beside its own point; labels that would overlap
    one another, another point or an interval move apart and keep a leader line to their point.
    The accuracy axis spans the points and their intervals (not the whole 0–1). The cost axis is
    logarithmic; when a run costs $0 (local models) it is a *symlog* axis, linear below the
    smallest non-zero cost's decade, and the axis label says so. When every run of a table costs
    $0, the axis is total tokens per problem (log) instead, and the label says so.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("the reward-cost plot needs matplotlib; install it with `pip install 'gcop-env[eval]'`") from None

    fig, axes = plt.subplots(1, len(tables), figsize=(6.4 * len(tables), 4.8), squeeze=False)
    placements = []
    for ax, table in zip(axes[0], tables):
        costs = [r.total_usd for r in table.rows]
        # Every run free (local models only): dollars say nothing, so the cost axis counts tokens.
        by_tokens = all(c == 0 for c in costs) and all(r.total_tokens > 0 for r in table.rows)
        points, intervals = [], []
        for row in table.rows:
            if row.metrics["accuracy"] is None:
                continue  # nothing scored (all infra errors): no point rather than a false 0
            accuracy = float(row.metrics["accuracy"])
            lo, hi = (float(v) for v in row.metrics["accuracy_ci95"])
            marker = "s" if row.kind in BASELINE_KINDS else "o"
            x = row.total_tokens if by_tokens else row.total_usd
            container = ax.errorbar([x], [accuracy], yerr=[[accuracy - lo], [hi - accuracy]], fmt=marker,
                                    capsize=4, label=row.label)
            points.append((x, accuracy, lo, hi, row.label, container.lines[0].get_color()))
            intervals += [lo, hi]
        if by_tokens:
            tokens = [r.total_tokens for r in table.rows]
            ax.set_xscale("log")
            ax.set_xlabel("total tokens per problem (log scale; every run here costs 0 USD: local models)")
            ax.set_xlim(*_log_range(tokens))
        elif any(c == 0 for c in costs):
            threshold = symlog_threshold(costs)
            ax.set_xscale("symlog", linthresh=threshold)
            # No "$" in labels: matplotlib reads text between two dollar signs as mathtext.
            ax.set_xlabel(f"total cost per problem (USD; symlog: linear below {_plain(threshold)}; 0 = local models)")
            ax.set_xlim(-threshold * 0.3, max(costs) * 4 if max(costs) > 0 else threshold)
        else:
            ax.set_xscale("log")
            ax.set_xlabel("total cost per problem (USD, log scale)")
            ax.set_xlim(*_log_range(costs))
        _plain_ticks(ax)
        ax.set_ylabel("accuracy (Pass@1, 95% CI)")
        ax.set_ylim(*_fitted_range(intervals))
        ax.set_title(table.title)
        ax.grid(True, which="both", alpha=0.3)
        placements.append((ax, points))
    fig.tight_layout()
    for ax, points in placements:  # after the layout: labels are placed in the axes' final pixels
        _label_points(fig, ax, points)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _log_range(values: list[float]) -> tuple[float, float]:
    """A log axis over ``values`` with a margin of a quarter of their span (at least 0.15 decades)
    each side: room for the labels, which move to the left of a point near the right edge."""
    lo, hi = math.log10(min(values)), math.log10(max(values))
    pad = max(0.15, 0.25 * (hi - lo))
    return 10 ** (lo - pad), 10 ** (hi + pad)


def _plain(value: float) -> str:
    """A tick or axis number in plain decimals (``0.0005``, ``2000``), never ``5e-04`` or ``10^{-3}``."""
    if value == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"


def _plain_ticks(ax) -> None:
    """Ticks at 1, 2 and 5 of each decade (over less than a decade: about five evenly spaced round
    numbers), written as plain decimals, no minor labels."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, SymmetricalLogLocator

    if ax.get_xscale() == "log":
        lo, hi = ax.get_xlim()
        if hi / lo < 10:  # less than a decade (close conditions): evenly spaced round numbers
            raw = (hi - lo) / 5
            magnitude = 10.0 ** math.floor(math.log10(raw))
            step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
            ax.xaxis.set_major_locator(FixedLocator([k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]))
        else:
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        ax.xaxis.set_major_locator(SymmetricalLogLocator(ax.xaxis.get_transform(), subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _plain(value)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _fitted_range(values: list[float]) -> tuple[float, float]:
    """The accuracy axis: the points and their intervals with a margin, within [0, 1] plus a sliver."""
    if not values:
        return -0.02, 1.02
    lo, hi = min(values), max(values)
    pad = max(0.03, 0.12 * (hi - lo))
    return max(-0.02, lo - pad), min(1.02, hi + pad)


def _label_points(fig, ax, points: list[tuple]) -> None:
    """Write each point's name beside it, in its colour, with no two labels overlapping and no
    label over another point or interval; a label moved off its point keeps a leader line to it.

    Greedy, in order of height: each label takes the first free place among right of its point,
    left of it, then the same two shifted up and down by whole label heights (farther each time),
    and finally farther out to the right; "free" means inside the axes and clear of the labels
    already placed, every marker and every interval (with its caps)."""
    if not points:
        return
    renderer = fig.canvas.get_renderer()
    to_pixels = ax.transData.transform
    frame = ax.get_window_extent(renderer)
    pixels_per_point = fig.dpi / 72.0
    obstacles = []  # (x0, y0, x1, y1) in display pixels
    for x, y, lo, hi, _, _ in points:
        px, py = to_pixels((x, y))
        _, plo = to_pixels((x, lo))
        _, phi = to_pixels((x, hi))
        marker = 5 * pixels_per_point
        cap = 4 * pixels_per_point + 1
        obstacles += [(px - marker, py - marker, px + marker, py + marker), (px - 1.5, plo, px + 1.5, phi),
                      (px - cap, plo - 1.5, px + cap, plo + 1.5), (px - cap, phi - 1.5, px + cap, phi + 1.5)]
    gap = 10 * pixels_per_point
    placed: list[tuple[float, float, float, float]] = []
    for x, y, lo, hi, name, color in sorted(points, key=lambda p: p[1]):
        probe = ax.text(0, 0, name, fontsize=8)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        width, height = extent.width + 2, extent.height + 2
        px, py = to_pixels((x, y))
        candidates = []
        for step in range(0, 13):
            for shift in ((0,) if step == 0 else (step, -step)):
                dy = shift * (height + 2)
                candidates += [(px + gap, py - height / 2 + dy), (px - gap - width, py - height / 2 + dy)]
        candidates += [(px + gap + k * width / 2, py - height / 2) for k in range(1, 6)]
        best, best_overlap = candidates[0], math.inf
        for cx, cy in candidates:
            box = (cx, cy, cx + width, cy + height)
            inside = frame.x0 + 2 <= box[0] and box[2] <= frame.x1 - 2 and frame.y0 + 2 <= box[1] and box[3] <= frame.y1 - 2
            overlap = sum(_overlap(box, other) for other in placed + obstacles) + (0 if inside else 1e6)
            if overlap < best_overlap:
                best, best_overlap = (cx, cy), overlap
            if overlap == 0:
                break
        cx, cy = best
        placed.append((cx, cy, cx + width, cy + height))
        at_rest = abs(cy - (py - height / 2)) < 1 and (abs(cx - (px + gap)) < 1 or abs(cx - (px - gap - width)) < 1)
        # offsets in points from the point to the label's lower-left corner
        offset = ((cx + 1 - px) / pixels_per_point, (cy + 1 - py) / pixels_per_point)
        ax.annotate(name, (x, y), xytext=offset, textcoords="offset points", ha="left", va="bottom", fontsize=8,
                    color=color, annotation_clip=False,
                    arrowprops=None if at_rest else dict(arrowstyle="-", color=color, lw=0.7, shrinkA=1, shrinkB=4))


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """The area two boxes (x0, y0, x1, y1) share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def report_json(tables: list[TaskTable]) -> dict:
    return {"schema": SCHEMA, "tables": [{
        "task": t.task, "split": t.split,
        "rows": [{"run_dir": r.run_dir, "condition": r.name, "label": r.label, "kind": r.kind, "core": r.core, "guide": r.guide,
                  "recipe": r.recipe, "accuracy": r.metrics["accuracy"], "accuracy_ci95": r.metrics["accuracy_ci95"],
                  "executability": r.metrics.get("executability"), "n_scored_problems": len(r.outcomes),
                  "n_infra": r.metrics.get("n_infra"), "usd_per_problem": r.total_usd,
                  "tokens_per_problem": r.total_tokens, "guide_priced": r.metrics.get("guide_priced"),
                  "cost_per_problem": r.metrics["cost_per_problem"], "max_turns": r.max_turns,
                  "turns": r.metrics.get("turns"),
                  "mcnemar_vs_core_only": asdict(r.paired) if r.paired else None, "paired_note": r.paired_note}
                 for r in t.rows]} for t in tables]}


@dataclass
class Report:
    out_dir: Path
    tables: list[TaskTable]

    @property
    def table_path(self) -> Path:
        return self.out_dir / "table.md"

    @property
    def plot_path(self) -> Path:
        return self.out_dir / "reward_cost.png"

    @property
    def json_path(self) -> Path:
        return self.out_dir / "report.json"

    @property
    def turns_path(self) -> Path | None:
        """``turns.png``, written when a run is multi-turn (else None)."""
        if not any(r.max_turns > 1 for t in self.tables for r in t.rows):
            return None
        return self.out_dir / "turns.png"


def write_report(run_dirs: list[Path | str], out_dir: Path | str, *, task: str | None = None) -> Report:
    """Read the run dirs, write ``table.md``, ``reward_cost.png`` and ``report.json`` into ``out_dir``.

    ``task``: when given, every run dir must be of that task (a run from another task is an error
    rather than a second table).
    """
    if not run_dirs:
        raise ReportError("give at least one run dir (written by `gcop eval --out DIR`)")
    seen: set[Path] = set()
    runs = []
    for run_dir in run_dirs:
        resolved = Path(run_dir).resolve()
        if resolved in seen:
            raise ReportError(f"run dir {run_dir} is given twice")
        seen.add(resolved)
        run = load_run(run_dir)
        if task is not None and run.task.lower() != task.lower():
            raise ReportError(f"cannot report {run_dir}: it is a {run.task} run, but --task {task} was asked for")
        runs.append(run)
    tables = build_tables(runs)
    out = Path(out_dir)
    if not str(out_dir).strip():
        raise ReportError("--out is empty; give a directory for table.md, reward_cost.png and report.json")
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; give a directory for table.md, reward_cost.png and report.json")
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir=out, tables=tables)
    # Everything is computed before anything is written: a bad run dir leaves no half report.
    markdown, payload = render_markdown(tables), report_json(tables)
    fig = plot_reward_cost(tables, report.plot_path)
    import matplotlib.pyplot as plt
    plt.close(fig)
    if report.turns_path is not None:
        from gcop_env.evaluation.multiturn import plot_turns
        plt.close(plot_turns(tables, report.turns_path))
    write_text_atomic(report.table_path, markdown)
    write_text_atomic(report.json_path, json.dumps(payload, indent=2) + "\n")
    return report
