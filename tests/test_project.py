"""project.yml is valid for weasel and its workflows, vars and deps are consistent."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project():
    from weasel.util import load_project_config

    return load_project_config(REPO)


def test_project_loads_with_defaults(project):
    assert project["vars"]["data_dir"] == "../shared/data"
    assert project["vars"]["gpu_id"] == -1
    names = {c["name"] for c in project["commands"]}
    for workflow, steps in project["workflows"].items():
        assert set(steps) <= names, workflow


def test_commands_have_help_deps_and_scripts(project):
    for command in project["commands"]:
        assert command.get("help") and command.get("script"), command["name"]
        assert command.get("deps"), command["name"]
        # every module or script a command runs is among its deps
        for line in command["script"]:
            for word in line.split():
                if word.endswith(".py") and not word.startswith("-"):
                    assert word in command["deps"], (command["name"], word)


def test_shipped_demo_assets_match_checksums(project):
    from weasel.util import get_checksum

    for asset in project["assets"]:
        if asset["dest"].startswith("assets/demo/"):
            assert get_checksum(REPO / asset["dest"]) == asset["checksum"], asset["dest"]
