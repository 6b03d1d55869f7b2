"""The shipped demo assets are consistent (ids, offsets, labels): runs assets/demo/validate_demo.py."""
import importlib.util
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


def test_demo_assets_validate(capsys):
    spec = importlib.util.spec_from_file_location("validate_demo", DEMO / "validate_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main() == 0, capsys.readouterr().out
