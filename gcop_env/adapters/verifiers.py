"""verifiers (0.4, the ``verifiers.v1`` API): GCoP tasks as a taskset for ``vf-eval`` and prime-rl.

One task per problem: the guide's prompt is the task's prompt, the task data carries the
``task_id`` (and where the problem comes from), and the guide's reply is scored by the public
scoring call (:class:`gcop_env.envs.score.Scoring`) when verifiers scores the trace:

* reward ``gcop_shaped``: the env's shaped reward (weight 1), the same number ``env.step`` gives;
* metrics: every term (``structure_ok``, ``task_reward``, ``judge_score``, ``reward_delta``,
  ``harm_penalty``, ``cost``, ``shaped``, ...), ``cost_usd``, ``spent_usd``, ``total_tokens``
  (verifiers keeps only numbers there);
* ``trace.info["gcop"]``: the step's whole info (status, validation, strategy, core output, cost,
  judge), which the numbers cannot hold;
* an infrastructure failure (the core's API, the sandbox, the budget) **raises**, so verifiers
  records the rollout as errored (``trace.errors``, rewards unset), never as a reward of 0.0.

The guide gets one chat turn and no tools: :class:`GuideHarness` (the taskset's default
harness, run in-process, no sandbox) sends the prompt once through verifiers' interception
endpoint. verifiers' own default harness would give the guide a shell.

Run it (the plugin id is ``gcop-tasks``; install ``gcop-env[verifiers]`` in a venv of its own,
since verifiers pins an ``mcp`` that OpenEnv's pin excludes)::

    vf-eval gcop-tasks -m MODEL --client.base-url http://127.0.0.1:8000/v1 --no-push \\
        --env.agent.runtime.type subprocess -n 20 \\
        --env.taskset.env-id GCoP-GSM8K-v0 --env.taskset.task.core anthropic:claude-haiku-4-5-20251001

``--no-push`` keeps the results local (vf-eval uploads to a hosted service by default);
``--env.agent.runtime.type subprocess`` runs the harness here instead of in a hosted sandbox.
Task options (``--env.taskset.task.*``): ``core``, ``options`` (any other ``gym.make``
keyword, e.g. ``'{"gamma": 0, "sandbox": "docker"}'``), ``stream``. Taskset options
(``--env.taskset.*``): ``env-id``, ``split``, ``data-files``, ``limit``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import verifiers.v1 as vf
from pydantic import Field

from gcop_env.cores.models import DEFAULT_CORE
from gcop_env.envs.score import Score, Scoring, close_process_scorings, process_scoring

TASKSET_ID = "gcop-tasks"
REWARD = "gcop_shaped"


class GCoPInfraError(RuntimeError):
    """The step failed for infrastructure reasons: verifiers records the rollout as errored."""


class GCoPTaskConfig(vf.TaskConfig):
    """How a reply is scored (``--env.taskset.task.*``)."""

    core: str = DEFAULT_CORE
    """The core spec (``anthropic:MODEL``, ``openai:MODEL@URL``, ``hf:PATH``)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Any other ``gym.make`` keyword: reward weights, ``judge``, ``temperature``, ``sandbox``, ``max_usd``..."""
    stream: int = 0
    """The core sample stream of this process's scoring calls."""


class GCoPTaskData(vf.TaskData):
    """One problem: ``task_id`` and where its env loads it from (no answer, no tests)."""

    task_id: str
    env_id: str
    split: str = "test"
    data_files: str | None = None
    limit: int | None = None


class GCoPTask(vf.Task[GCoPTaskData, vf.State, GCoPTaskConfig]):
    """Scores the trace's last reply with the GCoP env's step."""

    @vf.metric
    async def gcop(self, task: GCoPTaskData, trace: vf.Trace) -> dict[str, float]:
        """Score the guide's reply (once per trace): the terms as metrics, the info in ``trace.info``."""
        return (await _score_trace(self, task, trace, keep=True)).metrics()

    @vf.reward
    async def gcop_shaped(self, task: GCoPTaskData, trace: vf.Trace) -> float:
        """The env's shaped reward for the guide's reply."""
        return float((await _score_trace(self, task, trace, keep=False)).reward)


class GCoPTasksetConfig(vf.TasksetConfig):
    """Which problems (``--env.taskset.*``)."""

    task: GCoPTaskConfig = GCoPTaskConfig()
    env_id: str = "GCoP-GSM8K-v0"
    split: str = "test"
    data_files: str | None = None
    limit: int | None = None


class GCoPTaskset(vf.Taskset[GCoPTask, GCoPTasksetConfig]):
    """Every problem of a GCoP env, in the env's order."""

    def load(self) -> Iterator[GCoPTask]:
        config = self.config
        scoring = scoring_for(config.env_id, config.split, config.data_files, config.limit, config.task)
        for task_id in scoring.task_ids:
            data = GCoPTaskData(id=task_id, name=task_id, prompt=scoring.prompt(task_id), task_id=task_id,
                                env_id=config.env_id, split=config.split, data_files=config.data_files,
                                limit=config.limit)
            yield GCoPTask(data, config.task)


class GuideHarnessConfig(vf.HarnessConfig):
    id: str = TASKSET_ID


class GuideHarness(vf.Harness[GuideHarnessConfig]):
    """One chat turn, no tools, in-process: the guide reads the prompt and writes its strategy."""

    APPENDS_SYSTEM_PROMPT = True
    SUPPORTS_MCP = False
    SUPPORTS_RESUME = False
    EXECUTES_CODE = False
    NEEDS_CONTAINER = False

    async def launch(self, ctx: vf.ModelContext, trace: vf.Trace, runtime: vf.Runtime, endpoint: str, secret: str,
                     mcp_urls: dict[str, str], data: vf.TaskData, **_: Any) -> vf.ProgramResult:
        from openai import APIError, AsyncOpenAI

        system, prompt = self.resolve_prompt(data)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        if isinstance(prompt, str):
            messages.append({"role": "user", "content": prompt})
        else:
            messages.extend(m.model_dump(exclude_none=True) for m in prompt or [])
        client = AsyncOpenAI(base_url=endpoint, api_key=secret, max_retries=2)
        try:
            # every call goes through verifiers' interception (it records the trace and applies sampling)
            await client.chat.completions.create(model=ctx.model, messages=messages)
        except APIError as exc:
            return vf.ProgramResult(exit_code=1, stdout="", stderr=f"{type(exc).__name__}: {exc}")
        finally:
            await client.close()
        return vf.ProgramResult(exit_code=0, stdout="", stderr="")


class GuideEnvConfig(vf.SingleAgentEnvConfig):
    """The single guide seat; its harness runs here (``subprocess`` runtime), not in a hosted sandbox."""

    agent: vf.AgentConfig = vf.AgentConfig(runtime=vf.SubprocessConfig())


class GCoPEnv(vf.Env[GuideEnvConfig]):
    """One agent (the guide) plays each task once: verifiers' single-agent episode, run locally by default."""

    async def run(self, task: vf.Task, agents: vf.Agents) -> None:
        await agents.agent.run(task)


# -- the process's scoring handles, one per configuration ------------------------------------------
def scoring_for(env_id: str, split: str, data_files: str | None, limit: int | None,
                task_config: GCoPTaskConfig) -> Scoring:
    """This process's :class:`Scoring` for a taskset configuration (made on first use, then reused)."""
    make_kwargs = {**task_config.options, "core": task_config.core, "split": split, "data_files": data_files,
                   "limit": limit}
    return process_scoring(env_id, stream=task_config.stream, **make_kwargs)


def close_scoring() -> None:
    """Close this process's scoring handles (their cores and sandboxes close with the last holder)."""
    close_process_scorings()


# a trace's score, from the metric hook (which runs first) to the reward hook, by trace id
_scored: dict[str, tuple[str, Score]] = {}
_scored_lock = threading.Lock()
_MAX_PENDING = 100_000


async def _score_trace(task: GCoPTask, data: GCoPTaskData, trace: vf.Trace, *, keep: bool) -> Score:
    """The trace's score, computed once: the metric hook scores and keeps it, the reward hook takes it."""
    reply = trace.last_reply
    with _scored_lock:
        entry = _scored.get(trace.id) if keep else _scored.pop(trace.id, None)
    if entry is not None and entry[0] == reply:
        return entry[1]
    scoring = scoring_for(data.env_id, data.split, data.data_files, data.limit, task.config)
    score = await scoring.ascore(data.task_id, reply)
    info = score.jsonable_info()
    info["status"] = score.status
    trace.info["gcop"] = info
    if not score.is_task_outcome:
        raise GCoPInfraError(f"{data.task_id}: the {score.error_stage} step failed (not a task outcome): {score.error}")
    if keep:
        with _scored_lock:
            if len(_scored) >= _MAX_PENDING:  # reward hooks that never ran (a plugged-out reward): forget the oldest
                _scored.pop(next(iter(_scored)))
            _scored[trace.id] = (reply, score)
    return score
