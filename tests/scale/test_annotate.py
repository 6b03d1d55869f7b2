"""annotate without Ray: doc_annotations, inputs and rejects, shards, resume, CLI."""
import json
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_kbnlp.cli import app
from spacy_kbnlp.extensions import add_relation, install_extensions, set_coref_clusters
from spacy_kbnlp.readers.jsonl import doc_annotations
from spacy_kbnlp.scale import annotate, gpu_for_actor
from spacy_kbnlp.scale.ray_engine import check_cluster_gpus
from spacy_kbnlp.scale.shards import Manifest

DEMO_KB = Path(__file__).resolve().parents[2] / "assets" / "demo" / "kb.jsonl"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_output(folder):
    out = []
    for shard in sorted(folder.glob("shard-*.jsonl")):
        out.extend(json.loads(line) for line in shard.read_text(encoding="utf-8").splitlines())
    return out


@pytest.fixture(scope="module")
def blank_dir(tmp_path_factory):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    path = tmp_path_factory.mktemp("blank") / "pipeline"
    nlp.to_disk(path)
    return path


def corpus(n, prefix="d"):
    return [{"id": f"{prefix}{i}", "text": f"Document {i} is about Paris.", "year": 2000 + i}
            for i in range(n)]


def test_doc_annotations_gives_char_offsets_scores_clusters_and_relations():
    install_extensions()
    nlp = spacy.blank("en")
    doc = nlp("Marie Curie met Pierre Curie . She married him .")
    doc._.kb_links = [{"start": 0, "end": 2, "kb_id": "Q7186", "label": "PER", "score": 0.75,
                       "candidates": [["Q7186", 0.75], ["Q37463", 0.25]], "key": "entqa"}]
    set_coref_clusters(doc, [[(0, 2), (6, 7)], [(3, 5), (8, 9)]])
    doc.ents = [doc.char_span(0, 11, label="PER"), doc.char_span(16, 28, label="PER")]
    add_relation(doc, doc[0:2], doc[3:5], "spouse", 0.5)
    ann = doc_annotations(doc)
    assert ann["links"] == [{"start": 0, "end": 11, "text": "Marie Curie", "kb_id": "Q7186",
                             "label": "PER", "score": 0.75, "key": "entqa",
                             "candidates": [["Q7186", 0.75], ["Q37463", 0.25]]}]
    assert ann["clusters"] == [[[0, 11], [31, 34]], [[16, 28], [43, 46]]]
    assert ann["entities"] == [{"start": 0, "end": 11, "label": "PER"},
                               {"start": 16, "end": 28, "label": "PER"}]
    assert ann["relations"] == [{"head": 0, "tail": 1, "label": "spouse", "score": 0.5}]
    json.dumps(ann)  # plain JSON
    # without link records: the linked entities, without a score
    doc2 = nlp("Paris is nice")
    doc2.ents = [spacy.tokens.Span(doc2, 0, 1, label="LOC", kb_id="Q90")]
    assert doc_annotations(doc2)["links"] == [{"start": 0, "end": 5, "text": "Paris", "kb_id": "Q90",
                                               "label": "LOC", "score": None, "key": None,
                                               "candidates": []}]


def test_rejects_no_text_duplicate_id_undecodable_and_not_json(tmp_path, blank_dir):
    good = corpus(3)
    lines = [json.dumps(r).encode() for r in good]
    lines.insert(1, b'{"id": "d0", "text": "again"}')           # duplicate id
    lines.insert(2, b'{"id": "e1", "text": "  "}')               # no text
    lines.insert(3, b'{"id": "e2", "text": "caf\xe9"}')          # latin-1 byte
    lines.insert(4, b'{"id": "e3", "text": ')                    # not JSON
    lines.append(b'{"text": "no id here"}')                      # id = location
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.warns(UserWarning, match="KBW401"):
        s = annotate(str(blank_dir), path, tmp_path / "out", show_progress=False)
    assert (s["docs"], s["rejects"]) == (4, 4)
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["loc"], r["id"]) for r in rejects] == [("in.jsonl:2", "d0"), ("in.jsonl:3", "e1"),
                                                      ("in.jsonl:4", None), ("in.jsonl:5", None)]
    assert rejects[0]["reason"] == "duplicate id 'd0'"
    assert rejects[1]["reason"] == "no text in field 'text'"
    assert rejects[2]["reason"].startswith("undecodable bytes (invalid continuation byte at byte")
    assert rejects[3]["reason"].startswith("not JSON")
    out = read_output(tmp_path / "out")
    assert [r["id"] for r in out] == ["d0", "d1", "d2", "in.jsonl:8"]
    assert out[1]["year"] == 2001 and out[1]["text"] == "Document 1 is about Paris."


def test_txt_folder_and_parquet_inputs_and_field_names(tmp_path, blank_dir):
    folder = tmp_path / "txt"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("First text.", encoding="utf-8")
    (folder / "sub" / "b.txt").write_text("Second text.", encoding="utf-8")
    (folder / "bad.txt").write_bytes(b"\xff\xfe broken")
    with pytest.warns(UserWarning, match="KBW401"):
        s = annotate(str(blank_dir), folder, tmp_path / "out_txt", show_progress=False)
    assert (s["docs"], s["rejects"]) == (2, 1)
    assert [r["id"] for r in read_output(tmp_path / "out_txt")] == ["a.txt", "sub/b.txt"]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"doc": ["p0", "p1", "p2"], "body": ["One.", None, "Three."], "n": [1, 2, 3]})
    pq.write_table(table, tmp_path / "in.parquet")
    with pytest.warns(UserWarning, match="KBW401"):
        s = annotate(str(blank_dir), tmp_path / "in.parquet", tmp_path / "out_pq", text_field="body",
                     id_field="doc", show_progress=False)
    out = read_output(tmp_path / "out_pq")
    assert [(r["doc"], r["body"], r["n"]) for r in out] == [("p0", "One.", 1), ("p2", "Three.", 3)]
    assert s["rejects"] == 1
    with pytest.raises(ValueError, match="KBE408"):
        annotate(str(blank_dir), tmp_path / "in.parquet", tmp_path / "out_pq2", show_progress=False)


def test_resume_after_a_kill_is_exactly_once(tmp_path, blank_dir, monkeypatch):
    path = write_jsonl(tmp_path / "in.jsonl", corpus(23))
    out = tmp_path / "out"
    record = Manifest.record
    calls = {"n": 0}

    def killed_after_two(self, k, ids, files):
        if calls["n"] == 2:  # the kill: a half-written temporary file, no manifest entry
            (self.folder / "shard-00002.jsonl.tmp").write_text('{"id": "d10"')
            raise KeyboardInterrupt
        calls["n"] += 1
        record(self, k, ids, files)

    monkeypatch.setattr(Manifest, "record", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        annotate(str(blank_dir), path, out, shard_size=5, batch_size=2, show_progress=False)
    monkeypatch.setattr(Manifest, "record", record)
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["shards"]) == ["00000", "00001"] and not manifest["complete"]
    before = (out / "shard-00001.jsonl").read_bytes()
    s = annotate(str(blank_dir), path, out, shard_size=5, batch_size=2, show_progress=False)
    assert (s["skipped"], s["docs"], s["shards"]) == (10, 13, 5)
    assert (out / "shard-00001.jsonl").read_bytes() == before  # finished shards are kept
    assert not list(out.glob("*.tmp"))
    ids = [r["id"] for r in read_output(out)]
    assert ids == [f"d{i}" for i in range(23)]  # every id once, in input order
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["docs"] == 23
    assert [manifest["shards"][k]["count"] for k in sorted(manifest["shards"])] == [5, 5, 5, 5, 3]
    # a damaged shard is detected by its checksum and annotated again
    (out / "shard-00003.jsonl").write_text("damaged\n")
    with pytest.warns(UserWarning, match="KBW402"):
        s = annotate(str(blank_dir), path, out, shard_size=5, batch_size=2, show_progress=False)
    assert (s["skipped"], s["docs"]) == (18, 5)
    assert [r["id"] for r in read_output(out)] == ids
    # a shorter input: the shards beyond it go (entries and files)
    write_jsonl(path, corpus(7))
    s = annotate(str(blank_dir), path, out, shard_size=5, batch_size=2, show_progress=False)
    assert (s["skipped"], s["docs"], s["shards"]) == (5, 2, 2)
    assert [r["id"] for r in read_output(out)] == [f"d{i}" for i in range(7)]
    assert sorted(json.loads((out / "manifest.json").read_text())["shards"]) == ["00000", "00001"]
    # other settings in the same folder are refused
    with pytest.raises(ValueError, match="KBE403"):
        annotate(str(blank_dir), path, out, shard_size=7, show_progress=False)


def test_local_engine_matches_nlp_pipe_with_n_process_2(tmp_path, blank_dir):
    path = write_jsonl(tmp_path / "in.jsonl", corpus(12))
    s = annotate(str(blank_dir), path, tmp_path / "out", workers=2, shard_size=5, batch_size=3,
                 show_progress=False)
    assert s["docs"] == 12
    nlp = spacy.load(blank_dir)
    expected = [doc_annotations(d) for d in nlp.pipe(r["text"] for r in corpus(12))]
    out = read_output(tmp_path / "out")
    assert [r["annotations"] for r in out] == expected
    assert [r["id"] for r in out] == [f"d{i}" for i in range(12)]


def test_cli_annotate_with_docbin_shards_and_coded_errors(tmp_path, blank_dir, monkeypatch):
    path = write_jsonl(tmp_path / "in.jsonl", corpus(7))
    runner = CliRunner()
    res = runner.invoke(app, ["annotate", str(blank_dir), str(path), str(tmp_path / "out"),
                              "--shard-size", "4", "--docbin"])
    assert res.exit_code == 0, res.output
    assert "Annotated 7 documents" in res.output
    nlp = spacy.blank("en")
    docs = [d for f in sorted((tmp_path / "out").glob("shard-*.spacy"))
            for d in DocBin().from_disk(f).get_docs(nlp.vocab)]
    assert [d.text for d in docs] == [r["text"] for r in corpus(7)]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert set(manifest["shards"]["00001"]["files"]) == {"shard-00001.jsonl", "shard-00001.spacy"}
    assert str(tmp_path) not in json.dumps(manifest)  # no absolute paths saved
    res = runner.invoke(app, ["annotate", str(blank_dir), str(tmp_path / "missing.jsonl"),
                              str(tmp_path / "o2")])
    assert res.exit_code == 1 and "KBE402" in res.output
    res = runner.invoke(app, ["annotate", str(blank_dir), str(path), str(tmp_path / "o3"),
                              "--engine", "spark"])
    assert res.exit_code == 1 and "KBE401" in res.output
    # without Ray installed, --engine ray says how to install it
    monkeypatch.setitem(sys.modules, "ray", None)
    res = runner.invoke(app, ["annotate", str(blank_dir), str(path), str(tmp_path / "o4"),
                              "--engine", "ray"])
    assert res.exit_code == 1 and "KBE400" in res.output
    assert "pip install spacy-kbnlp[ray]" in res.output.replace("\n", " ")
    res = runner.invoke(app, ["build-kb", str(DEMO_KB), str(tmp_path / "kb"), "--engine", "ray"])
    assert res.exit_code == 1 and "KBE400" in res.output


def test_gpu_placement_without_a_gpu():
    assert gpu_for_actor(0, [], None) is None
    assert gpu_for_actor(0.0, [0], "0") is None
    # Ray sets CUDA_VISIBLE_DEVICES to the assigned GPUs: the device index is the position
    assert gpu_for_actor(1, [3], "3") == 0
    assert gpu_for_actor(0.5, ["2"], "1,2") == 1
    assert gpu_for_actor(1, [1], None) == 1
    with pytest.raises(RuntimeError, match="KBE405"):
        gpu_for_actor(1, [], None)
    with pytest.raises(RuntimeError, match="KBE405"):
        check_cluster_gpus(1, {"CPU": 2.0})
    check_cluster_gpus(0.5, {"CPU": 2.0, "GPU": 1.0})
    check_cluster_gpus(0, {"CPU": 2.0})
