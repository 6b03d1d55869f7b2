"""No layer imports upward at module level: the KB and core helpers import no corpus
reader, components import no training or CLI code (they may import training code
inside the methods that train)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "spacy_kbnlp"
FORBIDDEN = {"kb": ("readers", "training", "cli", "pipeline"),
             "core": ("readers", "training", "cli", "pipeline", "kb", "models"),
             "pipeline": ("training", "cli")}


def module_level_imports(path: Path):
    """Package-relative modules imported at the top level of ``path`` (not inside
    functions or classes)."""
    for node in ast.parse(path.read_text(encoding="utf8")).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            yield (node.module or "").split(".")[0] if node.level == 2 else "."
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spacy_kbnlp."):
            yield node.module.split(".")[1]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_upward_imports(layer):
    found = {f"{path.name} imports {mod}" for path in (ROOT / layer).glob("*.py")
             for mod in module_level_imports(path) if mod in FORBIDDEN[layer]}
    assert not found
