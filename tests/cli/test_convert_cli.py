import subprocess
import sys

import pytest
from spacy.tokens import DocBin
from spacy.util import make_tempdir
from typer.testing import CliRunner

import spacy_kbnlp  # noqa: F401
from spacy_kbnlp.cli import app
from spacy_kbnlp.cli.convert import convert, output_file

pytestmark = pytest.mark.filterwarnings("ignore:.*KBW05")


def load(nlp, path):
    return list(DocBin().from_disk(path).get_docs(nlp.vocab))


def test_output_file():
    assert str(output_file("a/b.benchmark.jsonl", "out")) == "out/b.spacy"
    assert str(output_file("a/TRAIN_FILE.TXT", "out")) == "out/TRAIN_FILE.spacy"
    assert str(output_file("a/b.json", "x/y.spacy")) == "x/y.spacy"


def test_convert_elevant_counts(nlp, shared_data):
    path = shared_data / "el" / "elevant" / "benchmarks" / "spotlight.benchmark.jsonl"
    with make_tempdir() as tmp:
        res = convert(path, tmp, "elevant", quiet=True, show_progress=False)
        docs = load(nlp, tmp / "spotlight.spacy")
    assert res["output"] == str(tmp / "spotlight.spacy")
    assert res["counts"]["docs"] == len(docs) == 58
    assert res["counts"]["el_labels"] == 330
    assert res["counts"]["ents"] == sum(len(d.ents) for d in docs)
    assert res["alignment"]["char_spans"] == 330 and res["alignment"]["expanded"] > 0
    assert res["alignment"]["exact"] + res["alignment"]["expanded"] == 330
    assert docs[0]._.el_gold[0]["entity_id"] == "Q33971"


def test_convert_conll04_and_semeval(nlp, shared_data):
    with make_tempdir() as tmp:
        res = convert(shared_data / "re" / "conll04" / "spert_format" / "conll04_train.json",
                      tmp / "c.spacy", "conll04", quiet=True, show_progress=False)
        assert res["counts"]["docs"] == 922 and res["counts"]["ents"] == 3377
        assert res["counts"]["relations"] == 1283
        docs = load(nlp, tmp / "c.spacy")
        assert sum(len(d._.rel_records) for d in docs) == 1283
        res = convert(shared_data / "re" / "semeval2010_task8" / "testing_keys" /
                      "TEST_FILE_FULL.TXT", tmp, "semeval2010", quiet=True, show_progress=False,
                      limit=100)
        assert res["counts"]["docs"] == 100 and res["counts"]["relations"] == 100
        assert res["counts"]["ents"] == 200


def test_convert_coref_options(nlp, fixtures_dir):
    path = fixtures_dir / "readers" / "ontonotes_sample.v4_gold_conll"
    with make_tempdir() as tmp:
        res = convert(path, tmp / "o.spacy", "conll2012", quiet=True, show_progress=False)
        assert (res["counts"]["docs"], res["counts"]["clusters"], res["counts"]["mentions"]) == (3, 5, 9)
        res = convert(path, tmp / "o.spacy", "conll2012", drop_singletons=True, quiet=True,
                      show_progress=False)
        assert (res["counts"]["clusters"], res["counts"]["mentions"]) == (3, 7)
        docs = load(nlp, tmp / "o.spacy")
        assert [[s.text for s in c] for c in docs[0]._.coref_clusters] == [
            ["John", "he", "his"], ["his dog", "It"]]


def test_convert_errors(fixtures_dir):
    with make_tempdir() as tmp:
        with pytest.raises(ValueError, match="KBE050"):
            convert(fixtures_dir / "readers" / "el.jsonl", tmp, "xml", quiet=True)
        with pytest.raises(ValueError, match="KBE058"):
            convert(fixtures_dir / "readers" / "el.jsonl", tmp, "jsonl", policy="loose", quiet=True)


def test_cli_prints_counts_and_alignment(fixtures_dir):
    runner = CliRunner()
    with make_tempdir() as tmp:
        result = runner.invoke(app, ["convert", str(fixtures_dir / "readers" / "el.jsonl"),
                                     str(tmp), "--format", "jsonl", "--policy", "expand"])
        assert result.exit_code == 0, result.output
        assert (tmp / "el.spacy").exists()
    out = " ".join(result.output.split())  # wasabi wraps long lines
    assert "Wrote 2 docs" in out
    assert "ents: 3," in out and "el_labels: 6," in out
    assert "6 character spans, 6 exact, 0 expanded" in out


def test_cli_user_errors_exit_1_without_traceback(fixtures_dir):
    runner = CliRunner()
    with make_tempdir() as tmp:
        bad = tmp / "bad.jsonl"
        bad.write_text('{"id": 1, "text": "ab", "mentions": [{"start": 0, "end": 1, "kb_id": null}]}\n',
                       encoding="utf-8")
        result = runner.invoke(app, ["convert", str(bad), str(tmp), "-f", "jsonl", "-p", "strict"])
        assert result.exit_code == 1
        assert "KBE056" in result.output and "bad.jsonl:1" in result.output
        assert "Traceback" not in result.output
        result = runner.invoke(app, ["convert", str(bad), str(tmp), "-f", "nope"])
        assert result.exit_code == 1 and "KBE050" in result.output


def test_python_dash_m(fixtures_dir):
    with make_tempdir() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "spacy_kbnlp", "convert", str(fixtures_dir / "readers" / "re.jsonl"),
             str(tmp / "re.spacy"), "--format", "jsonl"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        out = " ".join(proc.stdout.split())
        assert "docs: 2," in out and "ents: 5," in out and "relations: 3" in out
        assert (tmp / "re.spacy").exists()


def test_convert_selects_by_split_exclusion_and_id_mod(nlp, shared_data):
    from spacy_kbnlp.readers.select import doc_id

    gum = shared_data / "coref" / "gum"
    bench = shared_data / "el" / "elevant" / "benchmarks"
    semeval = shared_data / "re" / "semeval2010_task8" / "training" / "TRAIN_FILE.TXT"
    with make_tempdir() as tmp:
        res = convert(gum / "ontogum" / "conll", tmp / "dev.spacy", "conll2012", quiet=True,
                      show_progress=False, split_file=gum / "splits.md", split="dev")
        names = {doc_id(d) for d in load(nlp, tmp / "dev.spacy")}
        # splits.md lists 32 dev docs; its 2 reddit ones are not in the shared copy
        assert res["counts"]["docs"] == len(names) == 30
        assert "GUM_bio_byron" in names and not any(n.startswith("GUM_reddit") for n in names)
        res = convert(bench / "news-fair-v2.benchmark.jsonl", tmp / "train.spacy", "elevant",
                      quiet=True, show_progress=False,
                      exclude_from=bench / "news-fair-v2-test.benchmark.jsonl")
        assert res["counts"]["docs"] == 120 - 80
        res = convert(semeval, tmp / "dev.spacy", "semeval2010", quiet=True, show_progress=False,
                      id_mod="10:0")
        ids = [int(doc_id(d)) for d in load(nlp, tmp / "dev.spacy")]
        assert res["counts"]["docs"] == 800 and all(i % 10 == 0 for i in ids)
        res = convert(semeval, tmp / "train.spacy", "semeval2010", quiet=True,
                      show_progress=False, id_mod="10:!0", limit=5)
        assert [int(doc_id(d)) for d in load(nlp, tmp / "train.spacy")] == [1, 2, 3, 4, 5]


def test_select_errors(tmp_path):
    from spacy_kbnlp.readers.select import parse_id_mod, read_split_names

    (tmp_path / "s.md").write_text("## train\n  * a\n  * b\n## dev\n  * c\n", encoding="utf-8")
    assert read_split_names(tmp_path / "s.md", "train") == {"a", "b"}
    with pytest.raises(ValueError, match="KBE069"):
        read_split_names(tmp_path / "s.md", "test")
    assert parse_id_mod("10:!0") == (10, 0, False)
    with pytest.raises(ValueError, match="KBE070"):
        parse_id_mod("ten")
