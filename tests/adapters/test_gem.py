"""GEM adapter against the real ``gem-llm`` library (the ``[adapters]`` extra)."""

from __future__ import annotations

import pytest
from support import GOOD_GUIDE
from fake_llm import status

gem = pytest.importorskip("gem", reason="gem-llm is not installed: pip install 'gcop-env[adapters]'")

from gem.utils.constants import TERMINAL_STATE  # noqa: E402

from gcop_env import RetryPolicy  # noqa: E402
from gcop_env.adapters.gem import GEMGuideEnv, register_gem_envs  # noqa: E402


def env_kwargs(server, gsm8k_dir, **extra):
    return dict(core=f"openai:solver@{server.openai_base_url}", split="test", data_files=str(gsm8k_dir), limit=20,
                beta=0.1, gamma=0.0, kappa=0.0, retry=RetryPolicy(max_attempts=1), cache=False, **extra)


def test_registered_ids_make_vec_with_seeds_and_keep_step_info_through_autoreset(solver_server, gsm8k_dir):
    ids = register_gem_envs()
    assert "gcop:GSM8K" in ids and register_gem_envs() == ids  # idempotent
    envs = gem.make_vec(["gcop:GSM8K"] * 2, seed=3, **env_kwargs(solver_server, gsm8k_dir))
    assert [e.seed for e in envs.envs] == [3, 4]  # GEM passed seed + i to each constructor
    observations, reset_infos = envs.reset()
    first_ids = [info["task_id"] for info in reset_infos]
    assert all(env.env.unwrapped.problem.question in obs for env, obs in zip(envs.envs, observations))
    observations, rewards, terminated, truncated, infos = envs.step([GOOD_GUIDE, "junk, no strategy"])
    assert list(rewards) == pytest.approx([1.1, 0.0]) and list(terminated) == [True, True]
    # GEM's autoreset replaced each info by the reset's; the step's full info rides along
    for info, task_id, reward in zip(infos, first_ids, rewards):
        assert info["final_info"]["task_id"] == task_id and info["final_reward"] == reward
        assert "reward_components" in info["final_info"] and "cost" in info["final_info"]
    assert infos[0]["final_info"]["reward_components"]["task_reward"] == 1.0
    assert infos[1]["final_info"]["structure_ok"] is False
    assert all(env.env.unwrapped.problem.question in obs for env, obs in zip(envs.envs, observations))
    for env in envs.envs:  # GEM's vector envs have no close()
        env.close()


def test_seed_orders_problems_and_a_step_returns_gem_terminal_state(solver_server, gsm8k_dir):
    def first_problems(seed):
        env = GEMGuideEnv(seed=seed, **env_kwargs(solver_server, gsm8k_dir))
        order = [env.reset()[1]["task_id"] for _ in range(5)]
        env.close()
        return order

    assert first_problems(1) == first_problems(1) != first_problems(2)
    env = GEMGuideEnv(seed=0, **env_kwargs(solver_server, gsm8k_dir))
    _, info = env.reset(idx=4)
    observation, reward, terminated, truncated, info = env.step(GOOD_GUIDE)
    assert observation == TERMINAL_STATE and terminated and not truncated and reward == pytest.approx(1.1)
    twin = env.spawn(same_state=True)
    assert twin.env.unwrapped.problem.task_id == env.env.unwrapped.problem.task_id and twin.seed == 0


def test_infra_failure_is_retried_then_masked_not_a_zero_outcome(solver_server, gsm8k_dir):
    env = GEMGuideEnv(seed=0, infra_retries=1, infra_backoff_s=0.0, **env_kwargs(solver_server, gsm8k_dir))
    solver_server.faults.append(status(500))
    env.reset(idx=0)
    _, reward, terminated, truncated, info = env.step(GOOD_GUIDE)
    assert reward == pytest.approx(1.1) and info["infra_attempts"] == 2  # retried once, then scored
    solver_server.faults.extend([status(500), status(500)])
    env.reset(idx=0)
    _, reward, terminated, truncated, info = env.step(GOOD_GUIDE)
    assert reward == 0.0 and truncated and not terminated and info["infra_masked"]
    _, next_info = env.reset()
    assert next_info["final_info"]["infra_masked"] and next_info["final_info"]["reward_is_task_outcome"] is False


def test_gem_example_runs(solver_server, gsm8k_dir, capsys):
    import runpy

    from support import REPO_ROOT

    main = runpy.run_path(str(REPO_ROOT / "examples" / "gem_vector.py"))["main"]
    summary = main(["--core", f"openai:solver@{solver_server.openai_base_url}", "--data-files", str(gsm8k_dir),
                    "--limit", "20", "--num-envs", "2", "--steps", "2"])
    assert summary == {"scored": 4, "infra_masked": 0, "task_reward": 1.0}
    assert "scored 4 episodes, 0 masked" in capsys.readouterr().out


def test_importing_the_adapter_leaves_the_root_logger_as_it_was():
    import subprocess
    import sys

    code = ("import logging; root = logging.getLogger(); import gcop_env.adapters.gem; "
            "print(root.level, len(root.handlers))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["30", "0"]  # WARNING, no handler: GEM's basicConfig(INFO) was undone


def test_a_multi_turn_episode_returns_the_revision_prompt_until_it_ends(fake_llm, gsm8k_dir):
    from support import MT_FIRST, FeedbackSolver, reviser

    server = fake_llm(FeedbackSolver())
    register_gem_envs()
    env = gem.make("gcop:GSM8K-MultiTurn", seed=0, **env_kwargs(server, gsm8k_dir))
    observation, info = env.reset(idx=2)
    assert info["max_turns"] == 3
    observation, reward, terminated, truncated, info = env.step(MT_FIRST)
    assert not (terminated or truncated) and observation != TERMINAL_STATE and "Feedback:" in observation
    observation, reward, terminated, truncated, info = env.step(reviser(observation))
    assert terminated and observation == TERMINAL_STATE and info["turn"] == 2 and info["success"]
    _, info = env.reset()
    assert info["final_info"]["turn"] == 2 and info["final_reward"] == reward  # the finished turn rides along
    env.close()
