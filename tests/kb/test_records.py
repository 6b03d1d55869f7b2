import json
import warnings

import pytest
from spacy.kb import InMemoryLookupKB
from spacy.util import make_tempdir
from spacy.vocab import Vocab

from spacy_kbnlp.kb.records import (DEFAULT_TEMPLATE, EntityRecord, detect_source, entity_text,
                                    load_entity_ids, load_records, read_entities,
                                    records_from_inmemory_kb, records_from_wikidata_json,
                                    write_entities)

from .conftest import DEMO_KB

WIKIDATA = "el/kb_fb15k237_wikidata/entity2wikidata.json"


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_demo_kb(demo_records):
    assert len(demo_records) == 388
    first = demo_records[0]
    assert first == EntityRecord("paris_france", "Paris",
                                 "Capital and largest city of France, on the Seine river, known for "
                                 "the Eiffel Tower and the Louvre museum.",
                                 ["Paris, France", "City of Light"], ["location"])
    assert len({r.id for r in demo_records}) == 388
    assert load_entity_ids(DEMO_KB) == {r.id for r in demo_records}


def test_record_dict_round_trip(tmp_path):
    records = [EntityRecord("a", "Alpha", "first", ["A"], ["t"], 0.5, {"mid": "/m/1"}),
               EntityRecord("b", "Beta"), EntityRecord("ü", "Ünïcode", aliases=["U"])]
    path = tmp_path / "kb.jsonl"
    write_entities(records, path)
    assert read_entities(path) == records
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[1]) == {"id": "b", "name": "Beta"}
    assert "Ünïcode" in path.read_text(encoding="utf-8")


def test_unknown_keys_go_to_meta_and_nulls_are_empty(tmp_path):
    path = write_lines(tmp_path / "kb.jsonl", [
        '{"id": "x", "name": "X", "description": null, "aliases": null, "wikipedia": "url", "prior": 3}'])
    (record,) = read_entities(path)
    assert record == EntityRecord("x", "X", "", [], [], 3.0, {"wikipedia": "url"})


@pytest.mark.parametrize("line,code,where", [
    ('{"id": "b", "name": ', "KBE053", ":2"),
    ('["b", "B"]', "KBE059", ":2"),
    ('{"id": "b"}', "KBE054", ":2: missing field 'name'"),
    ('{"name": "B"}', "KBE054", ":2: missing field 'id'"),
    ('{"id": 7, "name": "B"}', "KBE059", ":2: field 'id'"),
    ('{"id": "", "name": "B"}', "KBE059", ":2: field 'id'"),
    ('{"id": "b", "name": "B", "aliases": "Bee"}', "KBE059", ":2: field 'aliases'"),
    ('{"id": "b", "name": "B", "types": [1]}', "KBE059", ":2: field 'types'"),
    ('{"id": "b", "name": "B", "prior": "high"}', "KBE059", ":2: field 'prior'"),
    ('{"id": "b", "name": "B", "prior": true}', "KBE059", ":2: field 'prior'"),
    ('{"id": "b", "name": ["B"]}', "KBE059", ":2: field 'name'"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, code, where):
    path = write_lines(tmp_path / "bad.jsonl", ['{"id": "a", "name": "A"}', line])
    with pytest.raises(ValueError) as err:
        read_entities(path)
    assert code in str(err.value)
    assert f"{path}{where}" in str(err.value)


def test_blank_lines_are_skipped_and_counted(tmp_path):
    path = write_lines(tmp_path / "kb.jsonl", ['{"id": "a", "name": "A"}', "", '{"id": "b", "name": 1}'])
    with pytest.raises(ValueError, match=r"kb.jsonl:3"):
        read_entities(path)


def test_duplicate_ids(tmp_path):
    path = write_lines(tmp_path / "kb.jsonl", ['{"id": "a", "name": "A1"}', '{"id": "b", "name": "B"}',
                                               '{"id": "a", "name": "A2"}'])
    with pytest.raises(ValueError, match=r"KBE005.*kb.jsonl:3: duplicate entity id 'a' \(first seen at .*kb.jsonl:1\)"):
        read_entities(path)
    with pytest.warns(UserWarning, match="KBW002"):
        first = read_entities(path, duplicates="first")
    assert [(r.id, r.name) for r in first] == [("a", "A1"), ("b", "B")]
    with pytest.warns(UserWarning, match="KBW002"):
        last = read_entities(path, duplicates="last")
    assert [(r.id, r.name) for r in last] == [("a", "A2"), ("b", "B")]
    with pytest.raises(ValueError, match="KBE024"):
        read_entities(path, duplicates="ignore")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="KBE006"):
        read_entities(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="KBE006"):
        load_entity_ids(tmp_path / "nope.jsonl")


def test_entity_text_templates():
    full = EntityRecord("p", "Paris", "Capital of France.", ["City of Light", "Paname"], ["location"])
    bare = EntityRecord("q", "Quux")
    assert entity_text(full) == "Paris [SEP] Capital of France."
    assert entity_text(bare) == "Quux"  # no dangling separator
    assert entity_text(bare, DEFAULT_TEMPLATE) == entity_text(bare, "{name} [SEP] {description}")
    tpl = "{name} ({types}) [SEP] {aliases} [SEP] {description}"
    assert entity_text(full, tpl) == "Paris (location) [SEP] City of Light, Paname [SEP] Capital of France."
    assert entity_text(EntityRecord("q", "Quux", "A thing."), "{name}: {aliases}; {description}") == "Quux; A thing."
    assert entity_text(EntityRecord("q", "", "Only a description."), DEFAULT_TEMPLATE) == "Only a description."
    assert entity_text(full, "Entity: {name}.") == "Entity: Paris."
    for bad in ("{title} [SEP] {description}", "{name!r}", "{name:>10}", "no placeholder", "{name", "{}"):
        with pytest.raises(ValueError, match="KBE014"):
            entity_text(full, bad)


def test_wikidata_json_small(tmp_path):
    data = {
        "/m/1": {"wikidata_id": "Q1", "label": "One", "description": "first", "alternatives": ["Uno", "One"],
                 "wikipedia": "https://en.wikipedia.org/wiki/One"},
        "/m/2": {"wikidata_id": "Q2", "label": None, "description": None, "alternatives": [], "wikipedia": None},
        "/m/3": {"wikidata_id": "Q1", "label": "One again", "description": "dup", "alternatives": []},
    }
    path = tmp_path / "entity2wikidata.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    records = records_from_wikidata_json(path)
    assert records == [
        EntityRecord("Q1", "One", "first", ["Uno"], [], None,
                     {"mid": "/m/1", "wikipedia": "https://en.wikipedia.org/wiki/One"}),
        EntityRecord("Q2", "Q2", "", [], [], None, {"mid": "/m/2"}),
    ]
    assert detect_source(path) == "wikidata_json"
    assert load_entity_ids(path) == {"Q1", "Q2"}
    assert load_records(path) == records
    path.write_text(json.dumps({"/m/1": {"label": "no qid"}}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"KBE018.*'/m/1'"):
        records_from_wikidata_json(path)


def test_wikidata_json_real(shared_data):
    path = shared_data / WIKIDATA
    if not path.exists():
        pytest.skip(f"{path} not found")
    raw = json.loads(path.read_text(encoding="utf-8"))
    records = records_from_wikidata_json(path)
    assert len(raw) == 14515 and len(records) == 14514
    by_id = {r.id: r for r in records}
    first_mid = next(mid for mid, ent in raw.items() if ent["wikidata_id"] == "Q2141")
    assert by_id["Q2141"].name == "Halifax" and by_id["Q2141"].meta["mid"] == first_mid
    assert by_id["Q128306"] == EntityRecord(
        "Q128306", "Denton", "city in Texas, United States", ["Denton, Texas"], [], None,
        {"mid": "/m/010016", "wikipedia": "https://en.wikipedia.org/wiki/Denton,_Texas"})
    assert sum(1 for r in records if not r.description) == 849
    assert load_entity_ids(path) == set(by_id)
    assert entity_text(by_id["Q128306"]) == "Denton [SEP] city in Texas, United States"


def make_inmemory_kb():
    kb = InMemoryLookupKB(Vocab(), entity_vector_length=3)
    kb.add_entity("Q1", 12.0, [1, 0, 0])
    kb.add_entity("Q2", 3.0, [0, 1, 0])
    kb.add_entity("Q3", 1.0, [0, 0, 1])
    kb.add_alias("Douglas", ["Q1", "Q2"], [0.8, 0.2])
    kb.add_alias("Douglas Adams", ["Q1"], [0.9])
    kb.add_alias("Kirk Douglas", ["Q2"], [0.7])
    return kb


def test_records_from_inmemory_kb():
    kb = make_inmemory_kb()
    records = {r.id: r for r in records_from_inmemory_kb(kb)}
    assert records["Q1"] == EntityRecord("Q1", "Douglas Adams", "", ["Douglas"], [], 12.0)
    assert records["Q2"] == EntityRecord("Q2", "Kirk Douglas", "", ["Douglas"], [], 3.0)
    assert records["Q3"] == EntityRecord("Q3", "Q3", "", [], [], 1.0)
    named = records_from_inmemory_kb(kb, names={"Q2": "Kirk"}, descriptions={"Q2": "actor"})
    assert [r for r in named if r.id == "Q2"][0] == EntityRecord("Q2", "Kirk", "actor",
                                                                 ["Kirk Douglas", "Douglas"], [], 3.0)


def test_inmemory_kb_folder_dispatch():
    kb = make_inmemory_kb()
    with make_tempdir() as d:
        kb.to_disk(d / "kb")
        assert detect_source(d / "kb") == "spacy_kb"
        assert load_entity_ids(d / "kb") == {"Q1", "Q2", "Q3"}
        assert {r.id: r.prior for r in load_records(d / "kb")} == {"Q1": 12.0, "Q2": 3.0, "Q3": 1.0}


def test_dense_kb_folder_dispatch(tmp_path):
    import numpy

    from spacy_kbnlp.kb.dense_kb import DenseKB

    records = [EntityRecord("a", "A", "x"), EntityRecord("b", "B")]
    kb = DenseKB.from_vectors(records, numpy.eye(2, 4, dtype="float32"), encoder_name="test-enc")
    kb.to_disk(tmp_path / "kb")
    assert detect_source(tmp_path / "kb") == "dense_kb"
    assert load_entity_ids(tmp_path / "kb") == {"a", "b"}
    assert load_records(tmp_path / "kb") == records
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_entity_ids(tmp_path / "kb" / "records.jsonl") == {"a", "b"}
    with pytest.raises(FileNotFoundError, match="KBE006"):
        detect_source(tmp_path)
