"""project.yml (the user project) and benchmarks/project.yml (benchmarks, peers, bundling)
are valid for weasel, their workflows, vars and deps are consistent, the paths of the
benchmark project work from its own folder (weasel runs commands there), and the
`spacy project document` sections in docs/ are current."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECTS = {"user": REPO, "benchmarks": REPO / "benchmarks"}
DOCS = {"user": REPO / "docs" / "project.md", "benchmarks": REPO / "docs" / "project_benchmarks.md"}
# commands that must not be in the user project (benchmark, peer and bundling work) and vice versa
BENCHMARK_ONLY = {"kb-scale", "el-benchmark", "el-benchmark-default", "benchmark-coref", "coref-bundle",
                  "el-bundle-reader", "el-bundle-scorer", "peer-coref-data", "peer-coref-train",
                  "peer-coref-evaluate", "insgenel-benchmark", "insgenel-trie-scale", "status"}


def _load(name):
    from weasel.util import load_project_config

    return load_project_config(PROJECTS[name])


@pytest.fixture(scope="module", params=sorted(PROJECTS))
def project(request):
    return request.param, _load(request.param)


def test_project_loads_with_defaults(project):
    name, config = project
    data_dir = (PROJECTS[name] / config["vars"]["data_dir"]).resolve()
    assert data_dir == (REPO.parent / "shared" / "data").resolve()  # the same shared data from both folders
    assert config["vars"]["gpu_id"] == -1
    names = {c["name"] for c in config["commands"]}
    for workflow, steps in config["workflows"].items():
        assert set(steps) <= names, workflow


def test_commands_are_split_between_the_projects():
    user = {c["name"] for c in _load("user")["commands"]}
    bench = {c["name"] for c in _load("benchmarks")["commands"]}
    assert bench == BENCHMARK_ONLY and not user & bench
    assert {"convert-el", "build-kb", "train-coref", "evaluate-coref", "package-coref", "el-package",
            "train-etrag", "package-etrag", "test", "test-slow"} <= user


def test_commands_have_help_deps_and_scripts(project):
    name, config = project
    for command in config["commands"]:
        assert command.get("help") and command.get("script"), command["name"]
        assert command.get("deps"), command["name"]
        # every module or script a command runs is among its deps
        for line in command["script"]:
            for word in line.split():
                if word.endswith(".py") and not word.startswith("-"):
                    assert word in command["deps"], (command["name"], word)


def test_benchmark_project_paths_resolve_from_its_folder():
    """Weasel runs benchmarks/project.yml's commands in benchmarks/: every script, config
    and source file they name (not outputs of earlier steps) exists from there, and no
    path names benchmarks/ again or an absolute location."""
    config = _load("benchmarks")
    folder = PROJECTS["benchmarks"]
    for command in config["commands"]:
        words = [w for line in command["script"] for w in line.split()] + command["deps"]
        for word in words:
            assert not word.startswith("/") and not word.startswith("benchmarks/"), (command["name"], word)
            if re.search(r"\.(py|cfg)$", word) and "venv" not in word:
                assert (folder / word).exists(), (command["name"], word)
        for path in command.get("outputs", []) + command.get("outputs_no_cache", []):
            assert not path.startswith("/") and (folder / path).resolve().is_relative_to(REPO), path


def test_shipped_demo_assets_match_checksums():
    from weasel.util import get_checksum

    for asset in _load("user")["assets"]:
        if asset["dest"].startswith("assets/demo/"):
            assert get_checksum(REPO / asset["dest"]) == asset["checksum"], asset["dest"]


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_project_docs_are_current(name, tmp_path):
    """docs/project*.md carry the `spacy project document` output of each project."""
    from weasel.cli.document import project_document

    out = tmp_path / "doc.md"
    project_document(PROJECTS[name], out)
    generated = out.read_text(encoding="utf-8").strip()
    assert generated in DOCS[name].read_text(encoding="utf-8"), \
        f"out of date: python -m spacy project document {PROJECTS[name].relative_to(REPO) or '.'} --output {DOCS[name].relative_to(REPO)}"
