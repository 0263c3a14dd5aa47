"""``gcop eval --guide SPEC --max-turns N``: guided episodes in which the guide revises after a failed turn,
every turn recorded, and the per-turn metrics of the summary.

The condition runs each (problem, sample) as a multi-turn episode on the env's path
(:class:`~gcop_env.step.episode.EpisodeScorer`): the guide reads the whole conversation so far (its
earlier observations and replies, then the revision observation), as it does in ``gcop grpo
--max-turns``; a local guide generates each turn for a batch of episodes at once, an API guide's
episodes are jobs of their own. One record per (problem, sample), as for a
single-turn run, whose top-level ``status`` / ``reward`` / ``success`` are the episode's last turn
and whose ``cost`` is every turn's, added up; ``turns`` holds each turn's own record (the guide's
output, strategy, the core's answer, status, reward, success, the feedback the guide was then shown,
and that turn's cost per role). An infrastructure failure on any turn makes the record ``infra``
(re-run to retry; the turns already paid come from the response cache).

Summary (``metrics["turns"]``): for t = 1..N, the solve rate after turn t (Pass@1 over sample 0 of
each scored problem, with its Wilson 95% interval; after turn N it is the run's accuracy) and the
mean cumulative cost and tokens per problem after turn t (all records; an episode solved at turn
k < t counts its cost through k), plus how many episodes ended at each turn.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gcop_env.cores.base import CoreError, CoreRequest, Message
from gcop_env.evaluation.conditions import Guided, Job
from gcop_env.evaluation.records import ROLES
from gcop_env.evaluation.stats import wilson_interval
from gcop_env.problem import Problem
from gcop_env.step.episode import EpisodeScorer, run_episodes

PER_RUN_KEYS = ("task", "split", "task_id", "condition", "sample")


class MultiTurnGuided(Guided):
    """The guided condition with ``max_turns`` > 1 (see the module doc)."""

    def __init__(self, config, task, scorer, guide):
        super().__init__(config, task, scorer, guide)
        self.episodes = EpisodeScorer(scorer, max_turns=config.max_turns, core_history=config.core_history)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_turns": self.config.max_turns, "core_history": self.config.core_history}

    def default_name(self) -> str:
        return f"{super().default_name()}-{self.config.max_turns}turns"

    def jobs(self, problems: list[Problem]) -> Iterator[Job]:
        n = self.config.guide_samples
        pairs = [(p, s) for p in problems for s in range(n)]
        if self.guide.per_request:  # an API guide: each job runs its own episode, turn after turn
            for p, s in pairs:
                yield Job(p, s, lambda p=p, s=s: self._episodes([(p, s)], max_workers=1)[0])
            return
        # a local guide: a batch of episodes at a time (in the run loop's background thread), each
        # turn generated for every running episode of the batch at once; the rows are then the jobs
        size = max(1, self.config.guide_batch_size)
        for start in range(0, len(pairs), size):
            batch = pairs[start:start + size]
            rows = self._episodes(batch, max_workers=self.config.workers)
            for (p, s), row in zip(batch, rows):
                yield Job(p, s, lambda row=row: row)

    def _episodes(self, pairs: list[tuple[Problem, int]], max_workers: int) -> list[dict[str, Any]]:
        """Run one episode per (problem, sample) and return their rows, in order."""
        sample_of: dict[int, int] = {}
        responses: dict[int, list[Any]] = {}  # id(episode) -> the guide's response of each turn

        def generate(running):
            requests = [CoreRequest(messages=tuple(Message(m["role"], m["content"]) for m in e.conversation()),
                                    sampling=self.sampling, sample_index=sample_of[id(e)]) for e in running]
            replies = self.guide.generate(requests)
            out = []
            for episode, reply in zip(running, replies):
                responses.setdefault(id(episode), []).append(reply)
                out.append(reply if isinstance(reply, CoreError) else reply.text)
            return out

        started = [self.episodes.start(p) for p, _ in pairs]
        sample_of.update({id(e): s for e, (_, s) in zip(started, pairs)})
        ran = run_episodes(generate, self.episodes, started, max_workers=max_workers,
                           samples=[s for _, s in pairs])
        return [self._episode_row(problem, sample, episode, results, responses.get(id(episode), []))
                for (problem, sample), (episode, results) in zip(pairs, ran)]

    def _episode_row(self, problem, sample, episode, results, replies) -> dict[str, Any]:
        turns = []
        for number, (result, reply) in enumerate(zip(results, replies), start=1):
            turn_row = self._row(problem, sample, result.outcome, guide_output=reply.text, guide_response=reply,
                                 guide_price=self._price)
            turn = result.turn
            record = {"turn": number, **{k: v for k, v in turn_row.items() if k not in PER_RUN_KEYS}}
            record["feedback"] = turn.feedback.text if turn is not None and turn.feedback is not None else None
            turns.append(record)
        guide_failed = len(replies) > len(results)  # the guide's reply of the last turn was an error
        if guide_failed:
            row = self._row(problem, sample, None, guide_error=replies[-1])
            turns.append({"turn": len(results) + 1, "status": "infra", "error": row["error"],
                          "cost": row["cost"]})
        else:
            last = results[-1]
            row = self._row(problem, sample, last.outcome, guide_output=replies[-1].text, guide_response=replies[-1],
                            guide_price=self._price)
        row["cost"] = {role: _sum_role([t["cost"][role] for t in turns]) for role in ROLES}
        row["turns"] = turns
        row["n_turns"] = len(turns)
        return row


def _sum_role(parts: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("calls", "cached_calls", "input_tokens", "output_tokens", "usd", "latency_s")
    return {k: sum(p.get(k, 0) for p in parts) for k in keys}


def turn_metrics(rows_by_problem: list[list[dict]], max_turns: int) -> dict[str, Any]:
    """The per-turn metrics of a multi-turn run (see the module doc)."""
    records = [r for rows in rows_by_problem for r in rows]
    first = [min(rows, key=lambda r: r["sample"]) for rows in rows_by_problem if rows]
    scored = [r for r in first if r["status"] != "infra"]
    solved_after, intervals = [], []
    for t in range(1, max_turns + 1):
        wins = sum(1 for r in scored if r["success"] and r.get("n_turns", 1) <= t)
        solved_after.append(wins / len(scored) if scored else None)
        intervals.append(list(wilson_interval(wins, len(scored))) if scored else None)
    usd_after, tokens_after = [], []
    for t in range(1, max_turns + 1):
        usd = tokens = 0.0
        for r in records:
            for turn in (r.get("turns") or [])[:t]:
                for role in ROLES:
                    cost = turn.get("cost", {}).get(role, {})
                    usd += cost.get("usd", 0.0)
                    tokens += cost.get("input_tokens", 0) + cost.get("output_tokens", 0)
        usd_after.append(usd / len(records) if records else 0.0)
        tokens_after.append(tokens / len(records) if records else 0.0)
    ended = [0] * max_turns
    for r in scored:
        ended[min(max_turns, max(1, r.get("n_turns", 1))) - 1] += 1
    return {"max_turns": max_turns, "solved_after_turn": solved_after, "solved_after_turn_ci95": intervals,
            "usd_after_turn": usd_after, "tokens_after_turn": tokens_after, "episodes_ended_at_turn": ended,
            "mean_turns": sum(r.get("n_turns", 1) for r in scored) / len(scored) if scored else None}


def turn_notes(turns: dict[str, Any]) -> list[str]:
    """What a reader of a multi-turn run's numbers must know."""
    return [(f"multi-turn: up to {turns['max_turns']} guide turns per problem; a failed turn's feedback never holds "
             "the gold or a reward test (code tasks score R on their reward tests only: see docs/multi-turn.md); "
             "cost and tokens per problem count every turn; metrics.turns gives the solve rate and the cumulative "
             "cost after each turn")]


def turn_lines(metrics: dict[str, Any]) -> list[str]:
    """The per-turn lines ``gcop eval`` prints after a multi-turn run."""
    turns = metrics.get("turns")
    if not turns:
        return []
    cells = []
    for t, (acc, usd, tokens) in enumerate(zip(turns["solved_after_turn"], turns["usd_after_turn"],
                                               turns["tokens_after_turn"]), start=1):
        shown = "n/a" if acc is None else f"{acc:.3f}"
        cells.append(f"turn {t}: solved {shown}, ${usd:.6f}, {tokens:.0f} tok")
    return ["  after each turn (cumulative per problem): " + "; ".join(cells)]


def turn_curve(metrics: dict[str, Any]) -> tuple[list[int], list[float | None], list[list[float] | None],
                                                 list[float], list[float]]:
    """(turns, solve rate, its 95% intervals, cumulative USD, cumulative tokens) after each turn of a run;
    a single-turn run is one point at turn 1 (its accuracy and cost per problem)."""
    turns = metrics.get("turns")
    if isinstance(turns, dict):
        n = int(turns["max_turns"])
        return (list(range(1, n + 1)), list(turns["solved_after_turn"]), list(turns["solved_after_turn_ci95"]),
                [float(x) for x in turns["usd_after_turn"]], [float(x) for x in turns["tokens_after_turn"]])
    total = metrics["cost_per_problem"]["total"]
    return [1], [metrics["accuracy"]], [metrics["accuracy_ci95"]], [float(total["usd"])], [float(total["tokens"])]


def plot_turns(tables: list, path: Any = None):
    """The multi-turn figure: per task, accuracy after each turn (left) and against the cumulative cost
    after each turn (right), one line per condition with Wilson 95% intervals; returns the Figure.

    The cost axis is USD per problem (symlog when a run is free), or tokens per problem when every run
    of the task costs $0 (local models), as in Figure 1.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gcop_env.evaluation.report import (
        symlog_threshold,  # report imports this module lazily
    )

    fig, axes = plt.subplots(len(tables), 2, figsize=(12.8, 4.8 * len(tables)), squeeze=False)
    for (ax_turns, ax_cost), table in zip(axes, tables):
        curves = [(row, turn_curve(row.metrics)) for row in table.rows if row.metrics.get("accuracy") is not None]
        by_tokens = all(max(c[3]) == 0 for _, c in curves) and all(max(c[4]) > 0 for _, c in curves)
        most = max((len(c[0]) for _, c in curves), default=1)
        for i, (row, (turns, acc, ci, usd, tokens)) in enumerate(curves):
            points = [(t, a, c, u, k) for t, a, c, u, k in zip(turns, acc, ci, usd, tokens) if a is not None]
            if not points:
                continue
            ts, accs, cis, usds, toks = zip(*points)
            low = [a - c[0] for a, c in zip(accs, cis)]
            high = [c[1] - a for a, c in zip(accs, cis)]
            marker = "s" if row.kind in ("core-only", "icl") else "o"
            label = f"{row.name} ({len(turns)} turn{'s' if len(turns) > 1 else ''})"
            offset = (i - (len(curves) - 1) / 2) * 0.04  # overlapping intervals side by side
            ax_turns.errorbar([t + offset for t in ts], accs, yerr=[low, high], fmt=f"-{marker}", capsize=3,
                              label=label)
            xs = toks if by_tokens else usds
            ax_cost.errorbar(xs, accs, yerr=[low, high], fmt=f"-{marker}", capsize=3, label=label)
            for label_text, x, a in _turn_labels(ts, xs, accs):
                ax_cost.annotate(label_text, (x, a), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax_turns.set_xticks(range(1, most + 1))
        ax_turns.set_xlim(0.5, most + 0.5)
        ax_turns.set_xlabel("guide turns (the guide revises after each failed turn)")
        ax_turns.set_ylabel("solved after turn t (Pass@1, 95% CI)")
        ax_turns.set_title(f"{table.title}: accuracy vs turns")
        costs = [x for _, c in curves for x in (c[4] if by_tokens else c[3])]
        if by_tokens:
            ax_cost.set_xscale("log")
            ax_cost.set_xlabel("cumulative tokens per problem after turn t (log; every run here costs 0 USD)")
        elif costs and min(costs) > 0:
            ax_cost.set_xscale("log")
            ax_cost.set_xlabel("cumulative cost per problem after turn t (USD, log scale)")
        else:
            threshold = symlog_threshold(costs)
            ax_cost.set_xscale("symlog", linthresh=threshold)
            ax_cost.set_xlabel(f"cumulative cost per problem after turn t (USD; symlog, linear below {threshold:g})")
        ax_cost.margins(x=0.08)  # room for the turn labels at the ends
        ax_cost.set_ylabel("solved after turn t (Pass@1, 95% CI)")
        ax_cost.set_title(f"{table.title}: accuracy vs cumulative cost")
    return finish_figure(fig, axes.ravel(), path)


def finish_figure(fig, axes, path: Any):
    """The turns figure's finish: an accuracy axis from 0 to 1, a grid and a legend on every axis; the
    figure is saved to ``path`` (when given) and returned."""
    for ax in axes:
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _turn_labels(turns, xs, ys) -> list[tuple[str, float, float]]:
    """One label per distinct point: turns that end where the previous one did share it (``t2–3``)."""
    out: list[tuple[str, float, float]] = []
    for t, x, y in zip(turns, xs, ys):
        if out and (out[-1][1], out[-1][2]) == (x, y):
            first = out[-1][0].split("–")[0]
            out[-1] = (f"{first}–{t}", x, y)
        else:
            out.append((f"t{t}", x, y))
    return out
