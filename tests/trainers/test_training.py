"""Training updates survive bf16: float32 master weights by default, bf16 only as compute.

On CPU, the Trainer's ``bf16=True`` runs the forward and backward under bf16 autocast exactly
as on a GPU, so this emulates the numerics of a GPU run: a few AdamW steps at the paper's GRPO
learning rate 1e-6 change nearly every weight with the default, and almost none when the
weights themselves are bf16 (an update of ~1e-6 is far below bf16's resolution of ~1/256).
"""

from __future__ import annotations


import pytest
from support import GOOD_GUIDE, gsm8k_golds, write_curated
from tiny_guide import build_tiny_guide

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from gcop_env.trainers.config import SFTRunConfig  # noqa: E402
from gcop_env.trainers.sft import build_sft_trainer  # noqa: E402
from gcop_env.trainers.training import guide_weights_dtype  # noqa: E402


@pytest.fixture(scope="module")
def corpus_and_guide(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16")
    questions = list(gsm8k_golds(4))
    guide = build_tiny_guide(root / "tiny", questions, [GOOD_GUIDE] * 3)
    corpus = write_curated(root / "curated.jsonl", questions)
    return corpus, guide


def changed_fraction(tmp_path, corpus, guide, **options) -> tuple[float, torch.dtype]:
    config = SFTRunConfig(corpus=str(corpus), guide=str(guide), output_dir=str(tmp_path / "out"), max_steps=3,
                          learning_rate=1e-6, per_device_train_batch_size=2, use_cpu=True, bf16=True,
                          save_steps=1000, **options)
    trainer = build_sft_trainer(config)
    before = {n: p.detach().float().clone() for n, p in trainer.model.named_parameters()}
    dtype = next(trainer.model.parameters()).dtype
    trainer.train()
    changed = total = 0
    for name, param in trainer.model.named_parameters():
        changed += int((param.detach().float() != before[name]).sum())
        total += param.numel()
    return changed / total, dtype


def test_default_keeps_float32_master_weights_so_small_updates_land(tmp_path, corpus_and_guide):
    corpus, guide = corpus_and_guide
    default, default_dtype = changed_fraction(tmp_path / "default", corpus, guide)
    pure_bf16, bf16_dtype = changed_fraction(tmp_path / "bf16", corpus, guide, weights_dtype="bfloat16")
    print(f"share of weights changed by 3 AdamW steps at lr 1e-6 with bf16 compute: "
          f"float32 master weights {default:.1%}, bfloat16 weights {pure_bf16:.1%}")
    assert default_dtype == torch.float32 and bf16_dtype == torch.bfloat16
    assert default > 0.9
    assert pure_bf16 < 0.05  # only weights near 0 (zero-initialised biases) can move by 1e-6 in bf16


def test_weights_dtype_choice():
    lora = SFTRunConfig(lora=True)
    full = SFTRunConfig()
    assert guide_weights_dtype(full, bf16=True) == torch.float32  # trained weights: float32 masters
    assert guide_weights_dtype(lora, bf16=True) == torch.bfloat16  # frozen base; adapters stay float32
    assert guide_weights_dtype(lora, bf16=False) == torch.float32
    assert guide_weights_dtype(SFTRunConfig(weights_dtype="bfloat16"), bf16=False) == torch.bfloat16
    with pytest.raises(ValueError, match="weights_dtype must be"):
        SFTRunConfig(weights_dtype="fp8")
