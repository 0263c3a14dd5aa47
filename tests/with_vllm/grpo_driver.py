"""Test-only driver: ``gcop grpo`` (the real CLI) with observers, in its own process.

    python tests/with_vllm/grpo_driver.py OUT.json [--cpu-weight-sync] -- GRPO_ARGS...

* ``--cpu-weight-sync``: the test-only patch of :mod:`cpu_weight_sync` (vLLM's CPU backend only).
* Around each of TRL's colocate weight syncs (``VLLMGeneration.sync_weights``) it has vLLM generate
  greedily from a fixed prompt before and after, and records both (did the sync change the tokens?).
* In colocate mode it starts torch.distributed's one-process group over a file store before vLLM
  would over TCP (a TCPStore listens on every interface; these tests keep to loopback).
* Every batch the reward function scores is recorded: problem ids, the guide texts, the core sample
  indices, the rewards and the structure checks.

All of it goes to OUT.json (rewritten after each event), then the process exits with the CLI's code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBE_TEXT = "operations link quantity units every combine step check"
PROBE_TOKENS = 24


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    split = argv.index("--")
    flags, grpo_args = argv[1:split], argv[split + 1:]  # the driver's flags, then gcop grpo's
    record: dict = {"syncs": [], "batches": []}

    def save() -> None:
        out.write_text(json.dumps(record, indent=1))

    if "--cpu-weight-sync" in flags:
        sys.path.insert(0, str(HERE))
        from cpu_weight_sync import keep_plain_linear_weights

        keep_plain_linear_weights()

    from gcop_env.trainers.grpo import ShapedReward

    scored = ShapedReward.record

    def record_batch(self, items, indices, outcomes, *args, **kwargs):
        rewards = scored(self, items, indices, outcomes, *args, **kwargs)
        record["batches"].append({"task_ids": [p.task_id for p, _ in items], "texts": [t for _, t in items],
                                  "indices": list(indices), "rewards": rewards,
                                  "structure_ok": [o.components.structure_ok for o in outcomes],
                                  "strategies": [o.parsed.strategy for o in outcomes],
                                  "errors": [o.error for o in outcomes],
                                  "costs": [o.cost.as_dict() for o in outcomes]})
        save()
        return rewards

    ShapedReward.record = record_batch

    if "--use-vllm" in grpo_args:
        from trl.generation.vllm_generation import VLLMGeneration

        sync = VLLMGeneration.sync_weights

        def probe(self) -> list[int]:
            """Greedy tokens after a prompt the guide was not trained on (small margins: any change
            of the weights shows in them)."""
            from vllm import SamplingParams

            ids = self.llm.get_tokenizer()(PROBE_TEXT, add_special_tokens=False).input_ids
            params = SamplingParams(temperature=0.0, max_tokens=PROBE_TOKENS, ignore_eos=True)
            out = self.llm.generate([{"prompt_token_ids": ids}], sampling_params=params, use_tqdm=False)
            return list(out[0].outputs[0].token_ids)

        def probed_sync(self) -> None:
            before = probe(self)
            sync(self)
            record["syncs"].append({"before": before, "after": probe(self)})
            save()

        VLLMGeneration.sync_weights = probed_sync

        # Colocate mode makes vLLM join a torch.distributed group (env:// rendezvous), whose TCPStore
        # listens on every interface; on these loopback-only machines the driver creates the
        # (one-process) group first, over a file store, so nothing listens beyond 127.0.0.1.
        init_vllm = VLLMGeneration._init_vllm

        def init_vllm_on_a_file_store(self) -> None:
            import tempfile

            import torch.distributed as dist

            if not dist.is_initialized() and self.accelerator.num_processes == 1:
                store = dist.FileStore(tempfile.mktemp(prefix="gcop-vllm-store-"), 1)
                dist.init_process_group("gloo", store=store, rank=0, world_size=1)
            init_vllm(self)

        VLLMGeneration._init_vllm = init_vllm_on_a_file_store

    save()
    from gcop_env.cli import main as gcop

    return gcop(["grpo", *grpo_args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
