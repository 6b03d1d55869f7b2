"""Every entry point in setup.cfg loads and is the object registered under the same name."""
import configparser
from pathlib import Path

import catalogue
import pytest
import spacy
from spacy.util import registry

import spacy_kbnlp  # noqa: F401  (registers by import as well)

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"
REGISTRIES = {
    "spacy_factories": None,
    "spacy_architectures": registry.architectures,
    "spacy_scorers": registry.scorers,
    "spacy_readers": registry.readers,
    "spacy_misc": registry.misc,
}


def _entry_points():
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    for group in REGISTRIES:
        for line in cfg["options.entry_points"].get(group, "").strip().splitlines():
            if line.strip():
                name, target = (x.strip() for x in line.split("=", 1))
                yield group, name, target


ENTRY_POINTS = list(_entry_points())


def test_entry_points_listed():
    assert len(ENTRY_POINTS) >= 10
    for _, name, _ in ENTRY_POINTS:
        assert name.startswith("spacy_kbnlp.") or "_" in name  # factories have plain names
        assert not name.startswith("spacy.")


@pytest.mark.parametrize("group,name,target", ENTRY_POINTS, ids=[e[1] for e in ENTRY_POINTS])
def test_entry_point_resolves(group, name, target):
    module, attr = target.split(":")
    obj = getattr(__import__(module, fromlist=[attr]), attr)
    if group == "spacy_factories":
        assert spacy.blank("en").has_factory(name) or name in registry.factories
    else:
        assert REGISTRIES[group].get(name) is obj


def test_installed_entry_points_match_setup_cfg():
    """The installed distribution exposes the same entry points (catches a stale install)."""
    from importlib.metadata import entry_points

    for group, name, target in ENTRY_POINTS:
        found = [ep for ep in entry_points(group=group) if ep.name == name]
        assert found and found[0].value == target, (group, name)
