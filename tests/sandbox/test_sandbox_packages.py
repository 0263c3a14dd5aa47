"""KodCode's scientific rows: the image has the packages, missing modules are infra (tests) or error
(candidate), ``gcop sandbox check --data-files`` finds a dataset's missing imports, and the image
carries its recipe's hash so an outdated one is rebuilt."""

from __future__ import annotations

import json
import os

import pytest

from _sandbox_support import SCIENTIFIC_SOLUTION, backend_fixture, make_backend, require_docker
from gcop_env.problem import Problem
from gcop_env.cli.sandbox import sandbox_cli
from gcop_env.sandbox.imports import needed_modules, scan_dataset
from gcop_env.validators.base import Status
from gcop_env.validators.kodcode import KodCodeValidator

# A KodCode-shaped row whose reference solution and tests use numpy and scipy.
SCIENTIFIC_TEST = """
import numpy as np
import pytest
from scipy import stats
from solution import *


def test_matches_scipy():
    data = [1.0, 2.0, 4.0, 8.0]
    assert np.allclose(standardize(data), stats.zscore(np.array(data)))


def test_mean_zero():
    assert abs(float(np.mean(standardize([3, 5, 7])))) < 1e-12
"""


box = backend_fixture()


def _problem(test: str) -> Problem:
    return Problem(task_id="sci", question="Standardize.", reference=test, metadata={"entry_point": "standardize"})


def _reply(code: str) -> str:
    return f"```python\n{code}\n```"


def test_numpy_scipy_row_passes(box):
    result = KodCodeValidator(sandbox=box).validate(_problem(SCIENTIFIC_TEST), _reply(SCIENTIFIC_SOLUTION))
    assert result.status is Status.PASS, result.details


def test_tests_needing_a_missing_module_are_infra_not_fail(box):
    test = "import gcop_module_absent_everywhere\n" + SCIENTIFIC_TEST
    result = KodCodeValidator(sandbox=box).validate(_problem(test), _reply(SCIENTIFIC_SOLUTION))
    assert result.status is Status.INFRA and result.is_infra
    assert result.details["missing_modules"] == ["gcop_module_absent_everywhere"]
    assert "gcop_module_absent_everywhere" in result.details["error"]


def test_candidate_needing_a_missing_module_is_its_error(box):
    code = "import gcop_module_absent_everywhere\n" + SCIENTIFIC_SOLUTION
    result = KodCodeValidator(sandbox=box).validate(_problem(SCIENTIFIC_TEST), _reply(code))
    assert (result.status, result.details["missing_module"]) == (Status.ERROR, "gcop_module_absent_everywhere")


def test_needed_modules_skips_guarded_imports():
    source = (
        "import os.path\nfrom a.b import c\nimport pytest\nnp = pytest.importorskip('numpy')\n"
        "try:\n    import fast_json\nexcept ImportError:\n    fast_json = None\n"
        "def test_x():\n    import inner_mod\n"
    )
    assert needed_modules(source) == {"os", "a", "pytest", "numpy", "inner_mod"}
    assert needed_modules("def broken(:\n") == set()


def _dataset(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_scan_dataset_counts_rows_per_module(tmp_path):
    rows = [
        {"question_id": "a", "solution": SCIENTIFIC_SOLUTION, "test": SCIENTIFIC_TEST},
        {"question_id": "b", "solution": "import pandas as pd\n", "test": "from solution import *\nimport pandas\n"},
    ]
    found = scan_dataset([_dataset(tmp_path, rows)])
    assert found.rows == 2
    assert found.solutions == {"numpy": 1, "scipy": 1, "pandas": 1}
    assert found.tests["numpy"] == 1 and found.tests["pandas"] == 1 and "solution" not in found.tests


def test_check_data_files_reports_missing_imports(tmp_path, capsys):
    rows = [
        {"question_id": "a", "solution": SCIENTIFIC_SOLUTION, "test": SCIENTIFIC_TEST},
        {"question_id": "b", "solution": "import gcop_module_absent_everywhere\n", "test": "from solution import *\n"},
    ]
    assert sandbox_cli(["check", "--data-files", str(_dataset(tmp_path, rows)), "--sandbox", "process"]) == 1
    out = capsys.readouterr()
    assert "| gcop_module_absent_everywhere | 1 | 0 | NO: ModuleNotFoundError" in out.out
    assert "| numpy | 1 | 1 | yes |" in out.out
    assert "gcop_module_absent_everywhere" in out.err
    assert sandbox_cli(["check", "--data-files", str(_dataset(tmp_path, rows[:1])), "--sandbox", "process"]) == 0


@pytest.mark.docker
def test_image_has_kodcodes_scientific_stack(tmp_path, capsys):
    """The Docker image imports every package the issue names (matplotlib without a display)."""
    require_docker()
    imports = "import numpy, pandas, scipy, sklearn, matplotlib, sympy, networkx\n"
    rows = [{"question_id": "all", "solution": imports, "test": "from solution import *\n"}]
    assert sandbox_cli(["check", "--data-files", str(_dataset(tmp_path, rows))]) == 0, capsys.readouterr()
    plot = (
        "import matplotlib.pyplot as plt\nimport pandas as pd\nfrom sklearn.linear_model import LinearRegression\n"
        "def fit_and_plot(xs, ys):\n    fig, ax = plt.subplots()\n    ax.plot(xs, ys)\n    fig.savefig('plot.png')\n"
        "    model = LinearRegression().fit(pd.DataFrame({'x': xs}), ys)\n    return round(float(model.coef_[0]), 6), len(ax.lines)\n"
    )
    test = "import matplotlib\nfrom solution import *\n\ndef test_fit():\n    assert fit_and_plot([1, 2, 3], [2, 4, 6]) == (2.0, 1)\n    assert matplotlib.get_backend().lower() == 'agg'\n"
    with make_backend("docker", pool_size=1) as box:
        outcome = box.run_pytest({"solution.py": plot, "test_solution.py": test}, timeout=30)
    assert outcome.all_passed, outcome.output[-2000:]


@pytest.mark.docker
def test_image_carries_the_current_recipe():
    require_docker()
    from gcop_env.sandbox.image import DEFAULT_IMAGE, image_is_current, image_recipe, recipe_hash

    assert image_recipe(DEFAULT_IMAGE) == recipe_hash(), (
        f"{DEFAULT_IMAGE} was built from another recipe; scripts/setup_docker.sh rebuilds it"
    )
    assert image_is_current(DEFAULT_IMAGE)
    assert image_recipe("gcop-sandbox:no-such-tag") is None


def test_recipe_hash_changes_with_the_recipe(monkeypatch):
    from gcop_env.sandbox import image

    before = image.recipe_hash()
    monkeypatch.setattr(image, "PACKAGES", image.PACKAGES + ("python3-extra",))
    assert image.recipe_hash() != before
    assert image.recipe_hash(offline=False) != before  # the Dockerfile's recipe is hashed apart


@pytest.fixture
def outdated_image():
    """An image like the sandbox's but labelled with another recipe (as one built by an older checkout)."""
    require_docker()
    import io

    import docker

    from gcop_env.sandbox.image import DEFAULT_IMAGE, RECIPE_LABEL

    client = docker.from_env()
    tag = f"gcop-sandbox:test-outdated-{os.getpid()}"
    dockerfile = f"FROM {DEFAULT_IMAGE}\nLABEL {RECIPE_LABEL}=0000000000000000\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    yield tag
    client.images.remove(tag, force=True)


@pytest.mark.docker
def test_outdated_image_is_rebuilt_not_used(outdated_image, monkeypatch, caplog):
    from gcop_env.sandbox import cli
    from gcop_env.sandbox.docker_backend import DockerSandbox
    from gcop_env.sandbox.image import DEFAULT_IMAGE, check_image

    built = []
    monkeypatch.setattr(cli, "build_image", lambda tag, **kwargs: built.append(tag))
    assert cli.sandbox_cli(["build-image", "--if-outdated", "--tag", outdated_image]) == 0
    assert cli.sandbox_cli(["build-image", "--if-outdated", "--tag", DEFAULT_IMAGE]) == 0
    assert built == [outdated_image]  # the outdated one is rebuilt, the current one is kept
    check = check_image(outdated_image)
    assert not check.ok and "another recipe" in check.message
    with caplog.at_level("WARNING", logger="gcop_env.sandbox"):
        DockerSandbox(image=outdated_image, pool_size=1).close()
    assert "another recipe" in caplog.text
