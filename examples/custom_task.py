"""A complete custom task: world capitals, scored by exact match of the core's \\boxed{} answer.

Run:  python examples/custom_task.py openai:MODEL@http://127.0.0.1:8000/v1
"""

import re
import sys

import gymnasium as gym

import gcop_env
from gcop_env import Problem, Status, ValidationResult, Validator

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima", "Canada": "Ottawa"}


class CapitalValidator(Validator):
    """R = 1 when the core's boxed answer names the capital."""

    answer_format = "math"  # the core is asked to put its final answer in \boxed{}

    def __init__(self, case_sensitive: bool = False):
        self.case_sensitive = case_sensitive

    def validate(self, problem: Problem, output: str) -> ValidationResult:
        boxed = re.findall(r"\\boxed\{([^}]*)\}", output)
        if not boxed:
            return ValidationResult(0.0, Status.ERROR, {"reason": "no \\boxed{} answer"})
        answer, gold = boxed[-1].strip(), problem.reference
        ok = answer == gold if self.case_sensitive else answer.lower() == gold.lower()
        return ValidationResult(float(ok), Status.PASS if ok else Status.FAIL, {"answer": answer, "gold": gold})

    def leaks(self, problem: Problem, strategy: str) -> bool:
        return problem.reference.lower() in strategy.lower()


def load_capitals(split="test", data_files=None):
    return [Problem(task_id=f"capital/{country.lower()}", question=f"What is the capital of {country}?",
                    reference=city) for country, city in CAPITALS.items()]


gcop_env.register_task("Capitals", validator=CapitalValidator, load=load_capitals, overwrite=True)


def main(core: str) -> float:
    env = gym.make("GCoP-Capitals-v0", core=core, case_sensitive=False, gamma=0.0)
    total = 0.0
    for country in CAPITALS:
        env.reset(options={"task_id": f"capital/{country.lower()}"})
        guide = "<think>Recall geography.</think><strategy>Name the seat of government, not the largest city.</strategy>"
        _, reward, _, _, info = env.step(guide)
        print(f"{country:8s} reward={reward:.2f} components={info['reward_components']}")
        total += reward
    env.close()
    return total / len(CAPITALS)


if __name__ == "__main__":
    print(f"mean shaped reward: {main(sys.argv[1]):.3f}")
