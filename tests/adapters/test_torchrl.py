"""TorchRL adapter against the real library (torchrl 0.14, the ``[adapters]`` extra)."""

from __future__ import annotations

import gymnasium as gym
import pytest
from fake_llm import status
from support import GOOD_GUIDE

torchrl = pytest.importorskip("torchrl", reason="torchrl is not installed: pip install 'gcop-env[adapters]'")

from torchrl.envs.libs.gym import GymWrapper  # noqa: E402

import gcop_env  # noqa: E402,F401
from gcop_env import RetryPolicy  # noqa: E402
from gcop_env.adapters.torchrl import TERMS, make_torchrl_env  # noqa: E402
from gcop_env.utils.sharing import holders  # noqa: E402

HARMFUL = "<think>Mislead.</think><strategy>HARMFUL: add everything twice.</strategy>"
REPLIES = [GOOD_GUIDE, HARMFUL, "no tags at all"]


def kwargs(server, gsm8k_dir, **extra):
    return dict(core=f"openai:solver@{server.openai_base_url}", split="test", data_files=str(gsm8k_dir), limit=6,
                gamma=0.0, retry=RetryPolicy(max_attempts=1), cache=False, **extra)


def test_gym_wrapper_takes_the_text_spaces_once_torchrl_is_imported(solver_server, gsm8k_dir):
    env = GymWrapper(gym.make("GCoP-GSM8K-v0", **kwargs(solver_server, gsm8k_dir)))  # no "No conversion tool" error
    td = env.reset()
    assert isinstance(td["observation"], str) and "<strategy>" in td["observation"]
    td["action"] = GOOD_GUIDE
    assert env.step(td)["next", "reward"].item() == pytest.approx(1.1)
    env.close()


def test_steps_keep_the_infra_flag_and_every_term_and_match_the_env(solver_server, gsm8k_dir):
    env = make_torchrl_env("GCoP-GSM8K-v0", **kwargs(solver_server, gsm8k_dir))
    reference = gym.make("GCoP-GSM8K-v0", **kwargs(solver_server, gsm8k_dir))
    compared = 0
    for i in range(6):
        for reply in REPLIES:
            td = env.reset()
            task_id = td["task_id"]
            td["action"] = reply
            step = env.step(td)["next"]
            reference.reset(options={"task_id": task_id})
            _, reward, _, _, info = reference.step(reply)
            assert step["reward"].item() == pytest.approx(reward)
            assert bool(step["reward_is_task_outcome"]) and not bool(step["infra_error"])
            for name in TERMS:
                assert step[name].item() == pytest.approx(float(info["reward_components"][name])), name
            assert step["status"] == ("malformed" if not info["structure_ok"] else info["validation"]["status"])
            compared += 1
    assert compared == 18
    solver_server.faults.append(status(500))
    td = env.reset()
    td["action"] = GOOD_GUIDE
    failed = env.step(td)["next"]
    assert not bool(failed["reward_is_task_outcome"]) and bool(failed["infra_error"]) and failed["status"] == "infra"
    assert failed["reward"].item() == 0.0  # Gymnasium's float; the flag says it is no outcome
    def policy(td):  # a fixed guide reply stands in for the guide model
        return td.set_non_tensor("action", GOOD_GUIDE)

    rollout = env.rollout(4, policy=policy, break_when_any_done=False)
    assert rollout["next", "reward"].flatten().tolist() == pytest.approx([1.1] * 4)
    assert rollout["next", "reward_is_task_outcome"].all()
    core = env._env.core
    assert holders(core) == 1
    env.close()
    assert holders(core) == 0 and core.inner._client is None  # the episode was the last holder
    reference.close()
