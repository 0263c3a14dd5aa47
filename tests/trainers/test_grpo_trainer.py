"""Infra-failed completions are out of the GRPO loss: a batch where half the completions hit an API
outage trains exactly like the batch without them (same loss, same gradients)."""

from __future__ import annotations

import pytest
from support import gsm8k_golds
from tiny_guide import build_tiny_guide

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from gcop_env.step.prompts import guide_prompt  # noqa: E402

# per prompt: four completions; the "outage" ones got no reward (the core API failed)
COMPLETIONS = [
    [("<strategy>Add the parts.</strategy>", 1.1), ("<strategy>outage one, longer than the rest of them all</strategy>", None),
     ("<strategy>Guess.</strategy>", 0.1), ("outage two", None)],
    [("<strategy>Multiply, then subtract.</strategy>", 0.6), ("outage three", None),
     ("<strategy>List each quantity first.</strategy>", 1.3), ("<strategy>outage four</strategy>", None)],
]


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    questions = list(gsm8k_golds(2))
    texts = [t for group in COMPLETIONS for t, _ in group]
    return build_tiny_guide(tmp_path_factory.mktemp("guide") / "tiny", questions, texts), questions


def _rollout(tokenizer, completions_per_prompt):
    """A fixed rollout (TRL's rollout_func hook): the i-th occurrence of a prompt gets its i-th completion."""

    def rollout(prompts, trainer):
        seen: dict[str, int] = {}
        prompt_ids, completion_ids = [], []
        for prompt in prompts:
            text = prompt[-1]["content"]
            index = seen.get(text, 0)
            seen[text] = index + 1
            group = completions_per_prompt[text]
            ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
            prompt_ids.append(list(ids["input_ids"]))
            completion_ids.append(tokenizer(group[index], add_special_tokens=False)["input_ids"]
                                  + [tokenizer.eos_token_id])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


def _loss_and_grads(trainer_cls, guide_path, questions, keep_outages: bool, tmp_path, loss_type: str):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    tokenizer = AutoTokenizer.from_pretrained(guide_path)
    tokenizer.padding_side = "left"
    rewards = {t: r for group in COMPLETIONS for t, r in group}
    groups = {}
    for question, group in zip(questions, COMPLETIONS):
        kept = [t for t, r in group if keep_outages or r is not None]
        groups[guide_prompt(question)] = kept
    generations = len(next(iter(groups.values())))

    def reward(prompts, completions, **_):
        return [rewards[c[0]["content"] if isinstance(c, list) else c] for c in completions]

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(guide_path)
    args = GRPOConfig(output_dir=str(tmp_path / f"out-{keep_outages}"), per_device_train_batch_size=2 * generations,
                      num_generations=generations, max_completion_length=64, beta=0.004, loss_type=loss_type,
                      use_cpu=True, bf16=False, report_to="none", logging_steps=1, seed=0)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": guide_prompt(q)}]} for q in questions])
    trainer = trainer_cls(model=model, reward_funcs=[reward], args=args, train_dataset=dataset,
                          processing_class=tokenizer, rollout_func=_rollout(tokenizer, groups))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop in trainer.train()
    batch = [row for row in dataset for _ in range(generations)]  # TRL's sampler repeats each prompt per generation
    inputs = trainer._prepare_inputs(batch)
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, trainer


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_outage_completions_leave_loss_and_gradients_unchanged(guide, tmp_path, loss_type, monkeypatch):
    from gcop_env.trainers.grpo_trainer import InfraAwareGRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    path, questions = guide
    loss_with, grads_with, trainer = _loss_and_grads(InfraAwareGRPOTrainer, path, questions, True, tmp_path, loss_type)
    loss_without, grads_without, _ = _loss_and_grads(InfraAwareGRPOTrainer, path, questions, False, tmp_path,
                                                     loss_type)
    assert trainer.dropped_unscored == 4
    # the scored completions move the policy (the loss itself is 0 at the first step when the
    # token-weighted advantages cancel; its gradient is not)
    assert sum(g.abs().sum().item() for g in grads_with.values()) > 0
    torch.testing.assert_close(loss_with, loss_without, rtol=1e-5, atol=1e-7)
    assert grads_with.keys() == grads_without.keys() and grads_with
    for name in grads_with:
        torch.testing.assert_close(grads_with[name], grads_without[name], rtol=1e-4, atol=1e-7,
                                   msg=lambda detail, name=name: f"{name}: {detail}")


def test_plain_trl_trainer_lets_outages_into_the_loss(guide, tmp_path, monkeypatch):
    # the failure this subclass exists for: TRL's own trainer keeps the unscored rows in the KL term
    # and the normaliser, so the same batch trains differently with and without them
    from trl import GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    path, questions = guide
    loss_with, grads_with, _ = _loss_and_grads(GRPOTrainer, path, questions, True, tmp_path, "dapo")
    loss_without, grads_without, _ = _loss_and_grads(GRPOTrainer, path, questions, False, tmp_path, "dapo")
    differs = not torch.allclose(loss_with, loss_without, rtol=1e-5, atol=1e-7) or any(
        not torch.allclose(grads_with[n], grads_without[n], rtol=1e-4, atol=1e-7) for n in grads_with)
    assert differs


def test_unsupported_trl_version_is_refused_with_the_pin():
    from gcop_env.trainers.grpo_trainer import check_trl_version

    check_trl_version("1.16.0")
    with pytest.raises(RuntimeError, match=r"trl>=1.16,<1.17"):
        check_trl_version("1.17.0")
    with pytest.raises(RuntimeError, match="found trl 0.29.1"):
        check_trl_version("0.29.1")
