"""The package layout: imports point one way (the import contracts in pyproject.toml, checked with
import-linter), no product module outside sandbox/ grows past ~700 lines, and the module names from
before the re-layout still import (gcop_env/_moved.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO_ROOT

MAX_LINES = 700


def _installed_tree(root: Path) -> Path:
    """The package as it installs (trainers/, validators/ and sandbox/ inside gcop_env/), copied
    under ``root``: import-linter reads a package's files from its directory."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "image")
    shutil.copytree(REPO_ROOT / "gcop_env", root / "gcop_env", ignore=ignore)
    for name in ("trainers", "validators", "sandbox"):
        shutil.copytree(REPO_ROOT / name, root / "gcop_env" / name, ignore=ignore)
    return root


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("importlinter", reason="import-linter is in the [dev] extra")
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", code, str(REPO_ROOT / "pyproject.toml")], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=300)


def test_imports_point_down(tmp_path):
    result = _lint_imports(_installed_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    root = _installed_tree(tmp_path)
    scorer = root / "gcop_env" / "step" / "scoring.py"
    scorer.write_text(scorer.read_text() + "\nfrom gcop_env.evaluation import run  # noqa: E402 - upward\n")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "gcop_env.step.scoring -> gcop_env.evaluation.run" in result.stdout, result.stdout


def test_no_product_module_outside_the_sandbox_is_long():
    long = {}
    for folder in ("gcop_env", "trainers", "validators"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            lines = path.read_text(encoding="utf-8").count("\n")
            if lines > MAX_LINES:
                long[str(path.relative_to(REPO_ROOT))] = lines
    assert not long, f"split these by job (one module, one job): {long}"


def test_old_module_names_still_import():
    import gcop_env.budget
    import gcop_env.envs.vector
    import gcop_env.envs.wrappers
    import gcop_env.vector
    from gcop_env.check import preflight, require_ready
    from gcop_env.cores.preflight import preflight as new_preflight
    from gcop_env.evaluation.runner import EvalConfig, eval_cli, run_eval
    from gcop_env.wrappers import InfraAware

    assert InfraAware is gcop_env.envs.wrappers.InfraAware  # the same module, not a copy
    assert gcop_env.vector is gcop_env.envs.vector and gcop_env.vector.__spec__.name == "gcop_env.envs.vector"
    assert preflight is new_preflight and callable(require_ready)
    assert gcop_env.budget.Budget is __import__("gcop_env.cores.budget", fromlist=["Budget"]).Budget
    assert gcop_env.budget.EXIT_BUDGET == 4 and callable(gcop_env.budget.budget_message)
    assert EvalConfig().kind == "core-only" and callable(eval_cli) and callable(run_eval)
    with pytest.raises(AttributeError, match="moved to"):
        gcop_env.budget.no_such_name  # noqa: B018


def test_python_m_on_the_old_trainer_cli_name_still_runs():
    result = subprocess.run([sys.executable, "-m", "gcop_env.trainers.cli"], capture_output=True, text=True,
                            timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 2 and "usage: python -m gcop_env.cli {curate|sft|grpo}" in result.stderr
