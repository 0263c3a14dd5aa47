"""The docs site: `mkdocs build --strict` passes (so any warning fails the suite), its generated
tables and CLI reference cover the code, it fetches nothing, and the README's links resolve.

One strict build of the real site (mkdocs.yml, docs/) into a temporary directory is shared by the
tests of this file; a second build of a copy with one broken link shows that strict mode fails.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO_ROOT as REPO, SHARED_DATA

HOOKS_PATH = REPO / "scripts" / "docs_hooks.py"


def _hooks():
    spec = importlib.util.spec_from_file_location("gcop_docs_hooks", HOOKS_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail("mkdocs is not installed: pip install -e '.[docs]' (scripts/bootstrap.sh does)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor, not a warning
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=root, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = _mkdocs_build(REPO, out)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def _page(site: Path, name: str) -> str:
    path = site / ("index.html" if name == "index" else f"{name}/index.html")
    return path.read_text(encoding="utf-8")


def _text(page_html: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page_html))


def test_the_site_builds_strict_with_every_page_in_the_nav(site):
    pages = sorted(p.stem for p in (REPO / "docs").glob("*.md"))
    for name in pages:
        assert (site / ("index.html" if name == "index" else f"{name}/index.html")).is_file(), name
    assert "<!-- gcop:" not in "".join(_page(site, n) for n in pages), "a generated-block marker was left in a page"


def test_the_cli_reference_has_every_command_and_every_option(site):
    main = importlib.import_module("gcop_env.cli.main")

    page = _page(site, "cli")
    text = _text(page)
    assert set(main.COMMANDS) == set(main.PARSERS)
    for name in main.COMMANDS:
        assert f'id="gcop-{name}"' in page, f"gcop {name} has no section in the CLI reference"
        parsers = [main.command_parser(name)]
        while parsers:
            parser = parsers.pop()
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    parsers.extend(action.choices.values())
                    assert all(f"gcop {name} {sub}" in text for sub in action.choices)
                elif action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction):
                    shown = action.option_strings or [action.metavar or action.dest]
                    assert all(s in text for s in shown), f"gcop {name}: {shown} missing from the CLI reference"


def test_the_config_tables_hold_every_field_with_its_range(site):
    import dataclasses

    from gcop_env.evaluation.config import EvalConfig
    from gcop_env.trainers.config import GRPORunConfig

    for page, cls in (("training", GRPORunConfig), ("evaluation", EvalConfig)):
        text = _text(_page(site, page))
        for f in dataclasses.fields(cls):
            help_start = f.metadata["help"].replace("`", "")[:30]
            assert f.name in text and help_start in text, (cls.__name__, f.name)
    training = _text(_page(site, "training"))
    assert "in (0, 1]" in training  # GRPORunConfig.top_p: lo=0 open, hi=1
    assert ">= 2" in training       # num_generations


def test_the_env_options_are_the_signature_of_the_env(site):
    import inspect

    from gcop_env.envs.env import GCoPEnv

    text = _text(_page(site, "environment"))
    for name in inspect.signature(GCoPEnv.__init__).parameters:
        if name not in ("self", "task"):
            assert name in text, name
    assert "partial_credit" in text and "GCoP-HumanEval-v0" in text  # the validator options, per task


def test_the_site_fetches_nothing_from_outside(site):
    for page in site.rglob("*.html"):
        content = page.read_text(encoding="utf-8")
        assert "fonts.googleapis" not in content and "fonts.gstatic" not in content, page
        for src in re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', content):
            pytest.fail(f"{page.relative_to(site)} loads {src}")


def test_the_paper_table_is_the_papers(site):
    table = SHARED_DATA / "paper_table1.md"
    text = _text(_page(site, "paper"))
    numbers = re.findall(r"\d+\.\d+%", table.read_text(encoding="utf-8")) if table.exists() else []
    for number in numbers or ["70.89%", "68.69%", "73.17%", "91.46%"]:
        assert number in text, number
    assert "not found" not in text


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """The real mkdocs.yml over a copy of docs/ with one link to a page that does not exist."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    page = tmp_path / "docs" / "models.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nSee [nowhere](no-such-page.md).\n", encoding="utf-8")
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    config = config.replace("docs_dir: docs", f"docs_dir: {tmp_path / 'docs'}")
    config = config.replace("  - scripts/docs_hooks.py", f"  - {HOOKS_PATH}")
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    result = _mkdocs_build(tmp_path, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stdout + result.stderr


def test_the_hook_refuses_what_it_cannot_document():
    hooks = _hooks()
    with pytest.raises(hooks.DocsGenerationError, match="unknown docs marker"):
        hooks.expand("<!-- gcop:no-such-table -->\n")

    class Documented:
        """A class.

        Args:
            a: the first.
        """

        def __init__(self, a: int = 1, b: int = 2):
            pass

    with pytest.raises(hooks.DocsGenerationError, match=r"not described.*\['b'\]"):
        hooks._signature_rows(Documented.__init__, Documented, {"self"}, "Documented")
    rows = hooks._signature_rows(Documented.__init__, Documented, {"self", "b"}, "Documented")
    assert rows == [["`a`", "`1`", "the first."]]


def test_every_readme_link_resolves(site):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert links
    for link in links:
        if re.match(r"^[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = (REPO / path) if path else REPO / "README.md"
        assert target.exists(), f"README links to {link}, which does not exist"
        if anchor and target.suffix == ".md" and target.parent == REPO / "docs":
            assert f'id="{anchor}"' in _page(site, target.stem), f"README links to {link}: no such anchor"
        elif anchor:
            pytest.fail(f"README links to {link}: anchors are checked on docs pages only")
