"""Clear coded errors for an empty entity source, an empty KB file and an index
folder without index.json (issue 14, item 6)."""
import shutil

import pytest

from spacy_kbnlp.kb.dense_kb import DenseKB
from spacy_kbnlp.kb.index import VectorIndex
from spacy_kbnlp.kb.records import read_entities


def test_an_empty_entity_file_is_kbe026(tmp_path, encoder):
    path = tmp_path / "entities.jsonl"
    path.write_text("")
    with pytest.raises(ValueError, match=r"KBE026.*entities.jsonl.*empty"):
        read_entities(path)
    with pytest.raises(ValueError, match="KBE026"):
        DenseKB.build([], encoder, show_progress=False)


@pytest.fixture
def saved_kb(tmp_path, demo_kb):
    demo_kb.to_disk(tmp_path / "kb")
    return tmp_path / "kb"


def test_a_missing_index_json_is_kbe027(saved_kb):
    (saved_kb / "index" / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"KBE027.*has index.faiss but no index.json"):
        DenseKB.from_disk(saved_kb)
    shutil.rmtree(saved_kb / "index")
    (saved_kb / "index").mkdir()
    with pytest.raises(FileNotFoundError, match="KBE021"):
        VectorIndex.from_disk(saved_kb / "index")


@pytest.mark.parametrize("name", ["vectors.npy", "manifest.json", "index/index.json"])
def test_an_empty_kb_file_is_kbe028(saved_kb, name):
    (saved_kb / name).write_bytes(b"")
    with pytest.raises(ValueError, match=rf"KBE028.*{name.split('/')[-1]}.*0 bytes"):
        DenseKB.from_disk(saved_kb, verify=False)
