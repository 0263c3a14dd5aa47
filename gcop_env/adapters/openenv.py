"""OpenEnv (0.10): any GCoP task served as an OpenEnv environment (HTTP and WebSocket).

    gcop serve openenv GCoP-GSM8K-v0 --core anthropic:claude-haiku-4-5-20251001 --port 8000

or, from Python, ``uvicorn.run(make_app("GCoP-GSM8K-v0", core=...))``. Clients:

* **WebSocket sessions** (``/ws``; OpenEnv's ``EnvClient``, e.g. :class:`GCoPEnvClient` or
  ``GenericEnvClient``): each session is one episode env of its own (problem, RNG, sample
  stream) on the server's shared parts. ``reset(task_id=...)`` (or ``index=``, or ``seed=`` for a
  random problem) returns the guide's prompt; ``step(GuideAction(text=...))`` scores the reply.
* **Stateless HTTP** (``POST /reset``, ``POST /step``): OpenEnv builds a fresh environment for
  every request, so a step carries its problem: ``{"action": {"text": ..., "task_id": ...}}``.

A step's observation is ``done`` with the shaped ``reward``, ``status`` and the reward ``terms``;
``metadata`` holds the step's whole info. An infrastructure failure (an API, the sandbox, the
budget) gives ``reward=None`` (OpenEnv's "no reward"), ``status="infra"`` and the error in
``metadata``: never a 0.0 a trainer would learn from.

Every environment OpenEnv creates (per session, and per HTTP request) holds the server's one
:class:`~gcop_env.envs.score.Scoring` (problems, core, response cache, sandbox pool, baseline
table); OpenEnv closes each when its session or request ends, which releases only its own hold.
The app's shutdown closes the rest.
"""

from __future__ import annotations

import functools
from typing import Any

from openenv.core.client_types import StepResult
from openenv.core.env_client import EnvClient
from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import Action, EnvironmentMetadata, Observation, State
from pydantic import Field

from gcop_env.envs.score import Scoring, score_of

DEFAULT_MAX_CONCURRENT_ENVS = 64


class GuideAction(Action):
    """The guide's reply; ``task_id`` names the problem (needed on stateless HTTP steps)."""

    text: str = Field(..., description="the guide's whole output: <think>…</think><strategy>…</strategy>")
    task_id: str | None = Field(default=None, description="the problem; default: the one of the last reset")


class GuideObservation(Observation):
    """The guide's prompt (after a reset) or a scored step (``done``, ``reward``, ``status``, ``terms``)."""

    prompt: str = Field(default="", description="the guide's prompt for the problem")
    task_id: str | None = Field(default=None, description="the problem")
    status: str | None = Field(default=None, description="pass, fail, timeout, error, tampered, malformed or infra")
    terms: dict[str, Any] = Field(default_factory=dict, description="every term of the shaped reward")


class GuideState(State):
    """The session's episode: the problem and what its last step gave."""

    env_id: str = ""
    task_id: str | None = None
    status: str | None = None


class GCoPEnvironment(Environment[GuideAction, GuideObservation, GuideState]):
    """One OpenEnv session (or one HTTP request): an episode env on the server's shared parts."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, scoring: Scoring):
        super().__init__()
        self._episode = scoring.episode()  # holds the shared parts until close()
        self._state = GuideState(env_id=scoring.env_id)

    def reset(self, seed: int | None = None, episode_id: str | None = None, task_id: str | None = None,
              index: int | None = None, **_: Any) -> GuideObservation:
        """A new episode: the problem ``task_id``, else the one at ``index``, else a random one (``seed``)."""
        options = {"task_id": task_id} if task_id is not None else ({"index": index} if index is not None else None)
        prompt, info = self._episode.reset(seed=seed, options=options)
        self._state = GuideState(env_id=self._state.env_id, episode_id=episode_id, step_count=0,
                                 task_id=info["task_id"])
        return GuideObservation(prompt=prompt, task_id=info["task_id"], done=False, reward=None,
                                metadata={"task_id": info["task_id"], "index": info["index"]})

    def step(self, action: GuideAction, timeout_s: float | None = None, **_: Any) -> GuideObservation:
        """Score the reply for ``action.task_id`` (else the reset's problem)."""
        problem = self._episode.problem
        if action.task_id is not None and (problem is None or problem.task_id != action.task_id):
            self.reset(task_id=action.task_id)
        elif problem is None:
            raise ValueError("no problem to score: reset() first, or give the action a task_id "
                             "(stateless HTTP /step makes a fresh environment for every request)")
        task_id = self._episode.problem.task_id
        prompt, reward, terminated, truncated, info = self._episode.step(action.text)
        score = score_of(task_id, reward, info, self._episode.last_outcome)
        self._state.step_count += 1
        self._state.status = score.status
        return GuideObservation(prompt=prompt, task_id=task_id, done=bool(terminated or truncated),
                                reward=score.reward, status=score.status, terms=score.terms,
                                metadata=score.jsonable_info())

    @property
    def state(self) -> GuideState:
        return self._state

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(name=f"gcop:{self._state.env_id}", version="0",
                                   description=f"{self._state.env_id}: guide-core steering (gcop-env); the action "
                                               "is the guide's reply, the reward the shaped executability reward")

    def close(self) -> None:
        self._episode.close()  # releases this session's hold; the shared parts stay for the others


def make_app(env_id: str = "GCoP-GSM8K-v0", *, max_concurrent_envs: int = DEFAULT_MAX_CONCURRENT_ENVS,
             scoring: Scoring | None = None, **make_kwargs: Any) -> Any:
    """The FastAPI app serving ``env_id`` (``make_kwargs``: ``gym.make`` keywords: core, split, ...).

    ``scoring``: serve an existing :class:`Scoring` instead (the app takes a share of it).
    ``max_concurrent_envs``: WebSocket sessions at once. The app's shutdown closes its handle.
    """
    handle = scoring.share() if scoring is not None else Scoring.make(env_id, **make_kwargs)
    app = create_app(functools.partial(GCoPEnvironment, handle), GuideAction, GuideObservation,
                     env_name=handle.env_id, max_concurrent_envs=max_concurrent_envs, state_cls=GuideState)
    app.router.on_shutdown.append(handle.close)
    app.state.gcop_scoring = handle
    return app


class GCoPEnvClient(EnvClient[GuideAction, GuideObservation, GuideState]):
    """OpenEnv's WebSocket client for a GCoP server: ``await client.reset(task_id=...)``,
    ``await client.step(GuideAction(text=...))`` (``.sync()`` for blocking calls)."""

    def _step_payload(self, action: GuideAction) -> dict[str, Any]:
        return action.model_dump(exclude_none=True)

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[GuideObservation]:
        observation = GuideObservation(**{**payload.get("observation", {}), "done": payload.get("done", False),
                                          "reward": payload.get("reward")})
        return StepResult(observation=observation, reward=payload.get("reward"), done=payload.get("done", False))

    def _parse_state(self, payload: dict[str, Any]) -> GuideState:
        return GuideState(**payload)
