"""The README demo on the shipped demo KB and text: candidates, relations, trained
pipelines given by path, coded errors."""
import pytest
import spacy

from spacy_kbnlp.cli.demo import find_demo_assets, run_demo


@pytest.fixture(scope="module")
def demo(encoder):
    return run_demo(encoder=encoder, link=False, coref=False, show_progress=False,
                    printer=lambda *a, **k: None)


def test_demo_retrieves_the_entities_each_passage_names(demo):
    assert demo["n_entities"] == 388
    passages = demo["passages"]
    # 32-token passages every 16 tokens cover the whole text, in order
    assert passages[0]["start"] == 0
    assert all(b["start"] - a["start"] == 16 for a, b in zip(passages, passages[1:]))
    by_text = {p["start"]: [c[1] for c in p["candidates"]] for p in passages}
    berners_lee = [s for s, p in zip(by_text, passages) if "Berners-Lee" in p["text"]]
    assert berners_lee and all("Tim Berners-Lee" in by_text[s] for s in berners_lee)
    assert all(len(p["candidates"]) == 3 for p in passages)
    assert all(a[2] >= b[2] for p in passages for a, b in zip(p["candidates"], p["candidates"][1:]))


def test_demo_relations_leave_the_query_out_and_use_its_entities(demo):
    rel = demo["relations"]
    assert rel["id"] == "rel_1"
    assert rel["entities"] == [("Alan Turing", "Peop"), ("London", "Loc"),
                               ("University of Manchester", "Org")]
    assert len(rel["demonstrations"]) == 3
    assert all(d["text"] != rel["text"] for d in rel["demonstrations"])
    names = {name for name, _ in rel["entities"]}
    assert all(r["head"] in names and r["tail"] in names for r in rel["relations"])
    assert {"head": "Alan Turing", "label": "Work_For", "tail": "University of Manchester"} in rel["gold"]
    assert set(demo["timings"]) >= {"build_kb_s", "relations_s", "total_s"}


def test_demo_pipeline_errors_are_coded(tmp_path, encoder):
    with pytest.raises(FileNotFoundError, match="KBE157"):
        run_demo(encoder=encoder, relations=False, link=False, pipelines=[tmp_path / "missing"],
                 show_progress=False, printer=lambda *a, **k: None)
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(tmp_path / "plain")
    with pytest.raises(ValueError, match="KBE158"):
        run_demo(encoder=encoder, relations=False, link=False, pipelines=[tmp_path / "plain"],
                 show_progress=False, printer=lambda *a, **k: None)
    with pytest.raises(FileNotFoundError, match="KBE156"):
        find_demo_assets(tmp_path)


def test_demo_runs_a_saved_linker_pipeline_against_the_demo_kb(tmp_path, encoder):
    """A saved entqa_linker pipeline (untrained reader, threshold 0, so it links) is
    pointed at the demo KB: every link names a demo entity, its scores against the
    demo gold are computed, and the pipeline's own KB on disk is left as it was."""
    from spacy.lang.en import English

    from spacy_kbnlp.kb.dense_kb import DenseKB
    from spacy_kbnlp.kb.records import EntityRecord

    nlp = English()
    linker = nlp.add_pipe("entqa_linker", config={"quantize": False, "threshold": 0.0, "top_k": 4})
    own = [EntityRecord("Q1", "Alan Turing", "English mathematician"),
           EntityRecord("Q2", "London", "capital of England")]
    linker.initialize(kb_loader=lambda vocab: DenseKB.build(own, encoder, show_progress=False),
                      reencode_kb=True)
    nlp.to_disk(tmp_path / "linker")
    out = run_demo(encoder=encoder, relations=False, link=False, pipelines=[tmp_path / "linker"],
                   show_progress=False, printer=lambda *a, **k: None)
    res = out["pipelines"][str(tmp_path / "linker")]
    links = res["links"]["entqa_linker"]
    from spacy_kbnlp.kb.records import read_entities

    demo_ids = {r.id for r in read_entities(find_demo_assets() / "kb.jsonl")}
    assert links and all(0.0 <= score <= 1.0 for _, _, score, _ in links)
    assert {kb_id for _, kb_id, _, _ in links} <= demo_ids
    # each link lists its ranked alternatives, all demo entities
    assert all(cands and {c for c, _ in cands} <= demo_ids and
               [v for _, v in cands] == sorted((v for _, v in cands), reverse=True)
               for _, _, _, cands in links)
    assert set(res["scores"]["entqa_linker"]) == {"el_micro_p", "el_micro_r", "el_micro_f"}
    assert DenseKB.from_disk(tmp_path / "linker" / "entqa_linker" / "kb").ids == ["Q1", "Q2"]


def test_demo_links_the_demo_text_with_a_reader_asset(encoder, tmp_path, monkeypatch):
    """With a reader asset (here an untrained packed reader saved as int8 differences
    from MiniLM, with its linker.json threshold) the demo links the demo text: links
    name demo entities, score above the threshold and list their ranked alternatives
    (demo entities). Without the asset it says how to build it."""
    import srsly

    import spacy_kbnlp.cli.demo as demo_mod
    from spacy_kbnlp.cli.demo import run_bundled_linker
    from spacy_kbnlp.kb.records import read_entities
    from spacy_kbnlp.models.reader import ReaderSpec, save_reader

    reader = tmp_path / "entqa_reader"
    save_reader(ReaderSpec(packed=True).build(), reader, delta=True, half=True, int8=True)
    srsly.write_json(reader / "linker.json", {"threshold": 1e-6})
    monkeypatch.setattr(demo_mod, "BUNDLED_READER", reader)
    out = run_demo(encoder=encoder, relations=False, coref=False, show_progress=False,
                   ner=None, printer=lambda *a, **k: None)  # no hints: the reader links
    res = out["linking"]
    demo_ids = {r.id for r in read_entities(find_demo_assets() / "kb.jsonl")}
    assert res["links"] and res["threshold"] == 1e-6
    for text, kb_id, score, cands in res["links"]:
        assert kb_id in demo_ids and score > res["threshold"] and text.strip()
        assert cands and {c for c, _ in cands} <= demo_ids and kb_id in {c for c, _ in cands}
        assert [v for _, v in cands] == sorted((v for _, v in cands), reverse=True)
    assert set(res["scores"]) == {"el_micro_p", "el_micro_r", "el_micro_f"}
    printed = []
    monkeypatch.setattr(demo_mod, "BUNDLED_READER", tmp_path / "missing")
    out = run_demo(encoder=encoder, relations=False, coref=False, show_progress=False,
                   printer=lambda *a, **k: printed.append(str(a[0]) if a else ""))
    assert "linking" not in out and any("el-bundle-reader" in p for p in printed)
    with pytest.raises(FileNotFoundError, match="KBE157"):
        run_bundled_linker(find_demo_assets(), "Alan Turing.", None, reader=tmp_path / "missing")


def test_shipped_reader_asset_links_the_demo_text(encoder):
    """The reader shipped in the package (the el workflow's per-candidate reader as
    a rank-16 int8 difference from MiniLM, under 1 MiB, with the threshold calibrated
    for the zero-shot retriever) loads on the bundled MiniLM and links the demo text
    far better than chance: most links are gold links."""
    import srsly

    from spacy_kbnlp.cli.demo import BUNDLED_READER

    files = {f.name: f.stat().st_size for f in BUNDLED_READER.iterdir()}
    assert {"spec.json", "linker.json", "delta.safetensors"} <= set(files)
    assert sum(files.values()) < 2**20
    out = run_demo(encoder=encoder, relations=False, coref=False, show_progress=False,
                   ner=None, printer=lambda *a, **k: None)  # no hints: the reader links
    res = out["linking"]
    assert res["threshold"] == srsly.read_json(BUNDLED_READER / "linker.json")["threshold"]
    assert len(res["links"]) >= 10
    assert all(kb_id in {c for c, _ in cands} for _, kb_id, _, cands in res["links"])
    assert res["scores"]["el_micro_p"] > 0.5 and res["scores"]["el_micro_f"] > 0.3


def test_shipped_coref_asset_resolves_the_demo_text():
    """The compact seq2seq_coref model that ships in the package (trained on OntoGUM,
    rank-32 difference from the seeded warm start) finds coreference clusters in the
    demo text, scored against the hand-made demo gold (measured 2026-11-26: CoNLL F1
    0.319, mention recall 0.829)."""
    from spacy_kbnlp.cli.demo import BUNDLED_COREF, _demo_coref_gold, run_bundled_coref

    assets = find_demo_assets()
    text = (assets / "demo_text.txt").read_text(encoding="utf-8")
    out = run_bundled_coref(text, model=BUNDLED_COREF, printer=lambda *a, **k: None,
                            gold=_demo_coref_gold(assets))
    assert len(out["clusters"]) >= 5 and all(len(c) >= 2 for c in out["clusters"])
    assert out["scores"]["conll_f"] > 0.25 and out["scores"]["mention_r"] > 0.6
    assert out["resolved_text"] != text


def test_coref_export_compact_feeds_the_demo(tmp_path, monkeypatch):
    """``coref export-compact`` writes a trained seq2seq_coref as its difference from
    the seeded warm start plus the component settings; the demo's coreference step
    rebuilds exactly that model (same clusters as the pipeline on a text). Without
    the asset the demo says how to build it; a pipeline trained from a full seq2seq
    model (no warm start) is refused."""
    import srsly
    import torch

    import spacy_kbnlp.cli.demo as demo_mod
    from spacy_kbnlp.cli.coref import export_compact
    from spacy_kbnlp.cli.demo import run_bundled_coref
    from spacy_kbnlp.core.torch_io import set_seed

    cfg = {"decoder_layers": 1, "segment_length": 32, "stride": 16, "max_target_length": 48,
           "max_clusters": 5}

    def trained(path, step, **settings):
        """A sentencizer + seq2seq_coref pipeline whose matrices moved by ``step`` (as
        training would move them), saved to ``path``."""
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        nlp.add_pipe("seq2seq_coref", config={**cfg, "representation": "partial", "action": "token",
                                              **settings})
        set_seed(0)  # as init_nlp does with [system] seed 0
        nlp.initialize()
        with torch.no_grad():
            for p in nlp.get_pipe("seq2seq_coref").coref_model.model.parameters():
                if p.ndim == 2 and min(p.shape) > 8:
                    p.add_(step * torch.ones(p.shape[0], 1) @ torch.ones(1, p.shape[1]))
        nlp.to_disk(path)

    trained(tmp_path / "pipeline", 1e-3)
    info = export_compact(tmp_path / "pipeline", tmp_path / "compact", rank=2)
    assert info["spec"]["seed"] == 0 and info["bytes"] < 3 * 2**20
    component = srsly.read_json(tmp_path / "compact" / "component.json")
    assert component["before"] == ["sentencizer"]
    assert component["config"]["representation"] == "partial" and "model" not in component["config"]
    text = "Ada wrote a poem. She read it to her father, and he liked it."
    want = [[m.text for m in c] for c in spacy.load(tmp_path / "pipeline")(text)._.coref_clusters]
    got = run_bundled_coref(text, model=tmp_path / "compact", printer=lambda *a, **k: None)
    assert got["clusters"] == want and isinstance(got["resolved_text"], str)
    assert "scores" not in got
    # with gold clusters of the text, the demo scores the clusters it found
    gold = spacy.blank("en")(text)
    from spacy_kbnlp.extensions import set_coref_clusters

    set_coref_clusters(gold, [[(0, 1), (5, 6)], [(3, 4), (6, 7)]])
    scored = run_bundled_coref(text, model=tmp_path / "compact", printer=lambda *a, **k: None,
                               gold=gold)
    assert scored["clusters"] == want
    assert set(scored["scores"]) >= {"conll_f", "lea_f", "mention_p", "mention_r"}
    assert all(0.0 <= v <= 1.0 for v in scored["scores"].values())
    printed = []
    monkeypatch.setattr(demo_mod, "BUNDLED_COREF", tmp_path / "missing")
    out = run_demo(relations=False, link=False, show_progress=False,
                   printer=lambda *a, **k: printed.append(str(a[0]) if a else ""))
    assert "coref" not in out and any("coref-bundle" in p for p in printed)
    with pytest.raises(FileNotFoundError, match="KBE157"):
        run_bundled_coref(text, model=tmp_path / "missing")
    # trained further from the compact model: exported against the same seeded base
    trained(tmp_path / "further", -2e-3, model=str(tmp_path / "compact"))
    again = export_compact(tmp_path / "further", tmp_path / "compact_further", rank=2)
    assert again["spec"]["seed"] == 0 and again["spec"]["base"] == info["spec"]["base"]
    want = [[m.text for m in c] for c in spacy.load(tmp_path / "further")(text)._.coref_clusters]
    got = run_bundled_coref(text, model=tmp_path / "compact_further", printer=lambda *a, **k: None)
    assert got["clusters"] == want
    from tests.models.tiny_seq2seq import build_tiny_seq2seq

    tiny = build_tiny_seq2seq(tmp_path / "tiny", hidden=64)
    nlp = spacy.blank("en")
    nlp.add_pipe("seq2seq_coref", config={**cfg, "model": str(tiny), "decoder_layers": None})
    nlp.initialize()
    nlp.to_disk(tmp_path / "full_model_pipeline")
    with pytest.raises(ValueError, match="KBE263"):
        export_compact(tmp_path / "full_model_pipeline", tmp_path / "compact2")


def test_shipped_scorer_links_the_demo_text_with_ner_hints(encoder):
    """The default demo links with the NER hints of en_core_web_sm and the final scorer
    shipped in the package (checksummed safetensors, a few KiB); measured 2026-12-06:
    53 links, P 0.755, R 0.656, F1 0.702 against the hand-made demo gold (the reader
    alone: F1 0.417)."""
    from spacy_kbnlp.linking.bundled import BUNDLED_SCORER
    from spacy_kbnlp.linking.hinted import FinalScorer

    files = {f.name: f.stat().st_size for f in BUNDLED_SCORER.iterdir()}
    assert {"scorer.safetensors", "scorer.json"} <= set(files) and sum(files.values()) < 2**14
    scorer = FinalScorer.from_disk(BUNDLED_SCORER)  # checks the sha256
    scorer.check()
    out = run_demo(encoder=encoder, relations=False, coref=False, show_progress=False,
                   printer=lambda *a, **k: None)
    res = out["linking"]
    assert res["mode"] == "hinted" and res["threshold"] == scorer.meta["hint_threshold"]
    assert len(res["links"]) >= 40
    assert res["scores"]["el_micro_p"] > 0.65 and res["scores"]["el_micro_f"] > 0.6
    linked = {text: kb_id for text, kb_id, _, _ in res["links"]}
    assert linked["Freddie Mercury"] == "freddie_mercury" and linked["Tbilisi"] == "tbilisi"
