"""The verifiers plugin ``gcop-tasks`` (installed as the top-level module ``gcop_tasks``).

verifiers resolves a taskset id to an importable module that exports its ``Taskset`` (and may
export a default ``Harness`` and an ``Env``) through ``__all__``::

    vf-eval gcop-tasks -m MODEL --client.base-url http://127.0.0.1:8000/v1 --no-push

Everything lives in :mod:`gcop_env.adapters.verifiers`.
"""

from gcop_env.adapters.verifiers import GCoPEnv, GCoPTaskset, GuideHarness

__all__ = ["GCoPEnv", "GCoPTaskset", "GuideHarness"]
