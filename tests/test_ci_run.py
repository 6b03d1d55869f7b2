""".ci/run runs the README's test command exactly, and with --slow the same command
with the slow options added (on a copy of the script next to a stand-in README whose
test command only echoes itself)."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = """# x

```bash
echo install-and-demo
echo pytest -q -p no:cacheprovider tests
```
"""


@pytest.fixture
def clone(tmp_path):
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text(README)
    return tmp_path


def _run(clone, *args):
    return subprocess.run(["bash", str(clone / ".ci" / "run"), *args], capture_output=True, text=True)


def test_default_runs_the_readme_command_exactly(clone):
    out = _run(clone)
    assert out.returncode == 0
    assert out.stdout.splitlines()[1] == "pytest -q -p no:cacheprovider tests"


def test_slow_adds_the_slow_options(clone):
    out = _run(clone, "--slow")
    assert out.returncode == 0
    assert out.stdout.splitlines()[1] == "pytest -q -p no:cacheprovider --slow -m slow tests"
    assert _run(clone, "--fast").returncode == 2


def test_the_real_readme_has_a_command_the_slow_option_fits():
    cmd = (REPO / "README.md").read_text().split("```")[1].splitlines()[2]  # after the fence line "bash"
    assert "pytest" in cmd and cmd.endswith(" tests")
