"""Which models the package uses by default, and which models are gone (with their successors).

Providers retire models on a schedule; a request to a retired model fails with a 4xx
``not_found_error``. The defaults below are current models, and :data:`RETIRED` lets the
fail-fast error of a retired model name its successor.

Checked on 2026-11-29 against:

* Anthropic model deprecations, https://platform.claude.com/docs/en/about-claude/model-deprecations
  and the model pages under https://platform.claude.com/docs/en/models/ (Sonnet 4.5 page:
  "deprecated ... retires on November 30, 2026. Recommended replacement: Claude Sonnet 5.5";
  Haiku 4.5 page: "Legacy", still available; Haiku 5.5 released 2026-10-07, Sonnet 5.5 the current
  Sonnet).
* Anthropic pricing, https://platform.claude.com/docs/en/about-claude/pricing (see ``pricing.py``).

Update this table (and the date above) when a provider announces a retirement.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

# -- defaults -----------------------------------------------------------------------------------
# The paper's cores are Claude 3 Haiku (retired 2026-04-20) and Claude 3.5 Haiku (retired
# 2026-02-19). Anthropic's recommended replacement for both is Claude Haiku 4.5: still served
# (status "Legacy" on 2026-11-29, no retirement date announced), the same price class, and, unlike
# Haiku 5.5, no adaptive thinking by default, so it behaves like the paper's cheap core.
DEFAULT_CORE_MODEL = "claude-haiku-4-5-20251001"
DEFAULT_CORE = f"anthropic:{DEFAULT_CORE_MODEL}"
# The curation teacher: Claude Sonnet 4.5 retires on 2026-11-30; its successor is Sonnet 5.5
# (the current Sonnet on 2026-11-29, $2 / $10 per MTok).
DEFAULT_TEACHER_MODEL = "claude-sonnet-5-5"
DEFAULT_TEACHER = f"anthropic:{DEFAULT_TEACHER_MODEL}"


@dataclass(frozen=True)
class Lifecycle:
    """A model that is retired (requests fail) or deprecated (still served, retirement announced)."""

    prefix: str  # matches the model id and its dated variants
    status: str  # "retired" or "deprecated"
    date: str  # retirement date (past for retired, announced for deprecated)
    successor: str  # a spec to use instead


_HAIKU = DEFAULT_CORE
_SONNET = "anthropic:claude-sonnet-5-5"
_OPUS = "anthropic:claude-opus-5-5"

# Longest prefix wins. Dates: Anthropic model deprecations page and release notes (checked 2026-11-29).
LIFECYCLE: tuple[Lifecycle, ...] = (
    Lifecycle("claude-instant-1", "retired", "2024-11-06", _HAIKU),
    Lifecycle("claude-2", "retired", "2025-07-21", _SONNET),
    Lifecycle("claude-3-sonnet", "retired", "2025-07-21", _SONNET),
    Lifecycle("claude-3-opus", "retired", "2026-01-05", _OPUS),
    Lifecycle("claude-3-haiku", "retired", "2026-04-20", _HAIKU),
    Lifecycle("claude-3-5-haiku", "retired", "2026-02-19", _HAIKU),
    Lifecycle("claude-3-5-sonnet", "retired", "2025-10-22", _SONNET),
    Lifecycle("claude-3-7-sonnet", "retired", "2026-02-19", _SONNET),
    Lifecycle("claude-sonnet-4-0", "retired", "2026-06-15", _SONNET),
    Lifecycle("claude-sonnet-4-2025", "retired", "2026-06-15", _SONNET),
    Lifecycle("claude-opus-4-0", "retired", "2026-06-15", _OPUS),
    Lifecycle("claude-opus-4-2025", "retired", "2026-06-15", _OPUS),
    Lifecycle("claude-opus-4-1", "retired", "2026-08-05", _OPUS),
    Lifecycle("claude-sonnet-4-5", "deprecated", "2026-11-30", _SONNET),
)

RETIRED = {entry.prefix: entry for entry in LIFECYCLE if entry.status == "retired"}


def lifecycle(model: str) -> Lifecycle | None:
    """The retirement entry for ``model`` (an Anthropic model id, dated or not), if any."""
    matches = [e for e in LIFECYCLE if model.startswith(e.prefix)]
    return max(matches, key=lambda e: len(e.prefix), default=None)


def retired_successor(backend: str, model: str) -> str | None:
    """The successor spec when ``model`` is known to be retired, else None."""
    entry = lifecycle(model) if backend == "anthropic" else None
    return entry.successor if entry is not None and entry.status == "retired" else None


_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_lifecycle(backend: str, model: str) -> None:
    """Log once per model when it is known to be retired or about to be.

    Only a warning: a proxy behind ``ANTHROPIC_BASE_URL`` may still serve the name. The request
    itself fails fast (:class:`~gcop_env.cores.base.FatalCoreError`) if the model is really gone.
    """
    entry = lifecycle(model) if backend == "anthropic" else None
    if entry is None:
        return
    with _warned_lock:
        if model in _warned:
            return
        _warned.add(model)
    if entry.status == "retired":
        log.warning("anthropic:%s was retired on %s: requests to it fail. Use %s instead.",
                    model, entry.date, entry.successor)
    else:
        log.warning("anthropic:%s is deprecated and retires on %s. Move to %s before then.",
                    model, entry.date, entry.successor)
