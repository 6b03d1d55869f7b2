"""entqa_linker: lifecycle, coded errors, overfitting a tiny example with exact
links, serialization, nlp.pipe / n_process, bad input, nlp.evaluate."""
import random
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from spacy.lang.en import English
from spacy.tokens import DocBin, Span
from spacy.training import Example
from spacy.util import make_tempdir

from spacy_kbnlp.encoders.hf import HFEncoder
from spacy_kbnlp.kb.dense_kb import DenseKB
from spacy_kbnlp.kb.records import EntityRecord
from spacy_kbnlp.readers.elevant import build_el_doc
from spacy_kbnlp.training.entqa import (reader_batch_loss, reader_candidates,
                                        training_passages)

RECORDS = [
    EntityRecord("Q76", "Barack Obama", "44th president of the United States"),
    EntityRecord("Q64", "Berlin", "capital and largest city of Germany"),
    EntityRecord("Q312", "Apple Inc.", "American technology company"),
    EntityRecord("Q567", "Angela Merkel", "chancellor of Germany from 2005 to 2021"),
    EntityRecord("Q513", "Mount Everest", "highest mountain on Earth"),
    EntityRecord("Q90", "Paris", "capital and largest city of France"),
]
TRAIN = [
    ("Barack Obama visited Berlin last week.", [(0, 12, "Q76"), (21, 27, "Q64")]),
    ("Angela Merkel met Barack Obama in Paris.", [(0, 13, "Q567"), (18, 30, "Q76"), (34, 39, "Q90")]),
    ("The weather was cold and grey that morning.", []),
    ("Apple Inc. opened a store in Paris.", [(0, 10, "Q312"), (29, 34, "Q90")]),
]
CONFIG = {"quantize": False, "top_k": 6, "adaptive_margin": None, "threshold": 0.05,
          "passage_length": 16, "passage_stride": 8}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gold_docs(nlp, data=TRAIN):
    docs = []
    for i, (text, links) in enumerate(data):
        labels = [{"id": j, "span": [s, e], "entity_id": q, "name": q}
                  for j, (s, e, q) in enumerate(links)]
        doc = build_el_doc(nlp, text, labels)
        doc._.source = {"id": i}
        docs.append(doc)
    return docs


def make_kb(records=RECORDS):
    return DenseKB.from_vectors(records, numpy.eye(len(records), 8, dtype="float32"),
                                encoder_name="placeholder")


def _train_reader(linker, docs, steps=60, lr=5e-4):
    """Overfit the component's reader on ``docs`` (candidates: every KB entity)."""
    reader = linker.reader
    tps = training_passages(docs, reader.tokenizer, length=linker.cfg["passage_length"],
                            stride=linker.cfg["passage_stride"])
    rng = random.Random(0)
    ids = [r.id for r in RECORDS]
    texts = {r.id: linker._entity_pieces(linker.kb.row(r.id)) for r in RECORDS}
    params = [p for n, p in reader.named_parameters() if "embeddings" not in n]
    opt = torch.optim.AdamW(params, lr=lr)
    torch.manual_seed(0)
    reader.train()
    for _ in range(steps):
        # candidates in a new order every step, as in training
        cands = [reader_candidates(tp, ids, len(ids), rng) for tp in tps]
        loss = reader_batch_loss(reader, tps, cands, texts.__getitem__)
        opt.zero_grad()
        loss.backward()
        opt.step()
    reader.eval()
    linker._after_load()


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)  # the reader's new heads and token rows: same links every run
    nlp = English()
    linker = nlp.add_pipe("entqa_linker", config=CONFIG)
    linker.initialize(kb_loader=lambda vocab: make_kb(), reencode_kb=True)
    _train_reader(linker, gold_docs(nlp))
    return nlp


def links(doc, key="entqa"):
    return [(s.start, s.end, s.kb_id_) for s in doc.spans[key]]


def test_add_pipe_is_cheap_and_settings_are_checked():
    nlp = English()
    linker = nlp.add_pipe("entqa_linker")
    assert linker.retriever is None and linker.reader is None
    assert linker.reader_spec.packed and linker.retriever_spec.score.kind == "dual"
    with pytest.raises(ValueError, match="KBE205"):
        English().add_pipe("entqa_linker", config={"passage_stride": 40})
    with pytest.raises(ValueError, match="KBE205"):
        English().add_pipe("entqa_linker", config={"threshold": 1.5})
    with pytest.raises(ValueError, match="KBE209"):
        English().add_pipe("entqa_linker", config={"topic": "title"})


def test_uninitialized_and_missing_kb_are_coded_errors(tmp_path):
    nlp = English()
    linker = nlp.add_pipe("entqa_linker", config={"kb": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match="KBE200"):
        nlp("Barack Obama")
    with pytest.raises(FileNotFoundError, match="KBE008"):
        linker.initialize()
    with pytest.raises(ValueError, match="KBE200"):
        English().add_pipe("entqa_linker").initialize()


def test_kb_from_another_encoder_empty_kb_duplicate_ids(encoder):
    nlp = English()
    linker = nlp.add_pipe("entqa_linker", config={"quantize": False})
    kb = DenseKB.build(RECORDS[:2], encoder, show_progress=False)
    with pytest.raises(ValueError, match="KBE001"):
        linker.initialize(kb_loader=lambda vocab: kb)
    empty = make_kb(RECORDS[:1])
    empty.remove(["Q76"])
    with pytest.raises(ValueError, match="KBE204"):
        linker.set_kb(empty)
    with pytest.raises(ValueError, match="KBE005"):
        make_kb(RECORDS[:2] + [EntityRecord("Q76", "Obama")])
    # re-encoding with the component's retriever fixes the encoder mismatch
    linker.set_kb(kb, reencode=True)
    assert kb.encoder_name.startswith("entqa-retriever-")


def test_overfit_tiny_example_gives_exact_links(trained):
    doc = trained("Barack Obama visited Berlin last week.")
    assert links(doc) == [(0, 2, "Q76"), (3, 4, "Q64")]
    assert [(e.start, e.end, e.kb_id_, e.label_) for e in doc.ents] == \
        [(0, 2, "Q76", "ENTITY"), (3, 4, "Q64", "ENTITY")]
    for span in doc.spans["entqa"]:
        assert span._.link_score > 0.05
        cands = span._.kb_candidates
        assert cands[0][0] == span.kb_id_ and cands[0][1] == pytest.approx(span._.link_score)
        assert len(cands) == 5 and all(a[1] >= b[1] for a, b in zip(cands, cands[1:]))
    assert doc._.entqa_candidates[0]["start"] == 0
    assert {c[0] for c in doc._.entqa_candidates[0]["candidates"]} == {r.id for r in RECORDS}
    # the reader rejects every candidate of a passage that mentions none of them
    empty = trained("The weather was cold and grey that morning.")
    assert links(empty) == [] and list(empty.ents) == []


def test_serialization_round_trip_gives_identical_links(trained):
    texts = [t for t, _ in TRAIN] + ["Angela Merkel visited Paris."]
    before = [trained(t) for t in texts]
    with make_tempdir() as tmp:
        trained.to_disk(tmp)
        assert (tmp / "entqa_linker" / "reader" / "encoder" / "model.safetensors").exists()
        assert (tmp / "entqa_linker" / "kb" / "manifest.json").exists()
        loaded = spacy.load(tmp)
    after = [loaded(t) for t in texts]
    for a, b in zip(before, after):
        assert links(a) == links(b)
        assert a._.kb_links == b._.kb_links or all(
            x["kb_id"] == y["kb_id"] and x["score"] == pytest.approx(y["score"], abs=1e-5)
            for x, y in zip(a._.kb_links, b._.kb_links))
    # to_bytes / from_bytes
    data = trained.get_pipe("entqa_linker").to_bytes()
    nlp2 = English()
    nlp2.add_pipe("entqa_linker", config=CONFIG).from_bytes(data)
    assert [links(nlp2(t)) for t in texts] == [links(d) for d in before]


ODD = ["", "   \n\t ", "Barack", "Ünïcödé → 🤖 Berlin ​ zero​width", "Paris. " * 3,
       "Angela Merkel met Barack Obama in Paris."]


def test_pipe_equals_call_and_keeps_every_doc(trained):
    texts = [t for t, _ in TRAIN] + ODD
    single = [trained(t) for t in texts]
    for batch_size in (1, 3, 50):
        piped = list(trained.pipe(texts, batch_size=batch_size))
        assert len(piped) == len(texts)
        for a, b in zip(single, piped):
            assert a.text == b.text and links(a) == links(b)
            assert [(r["kb_id"], round(r["score"], 5)) for r in a._.kb_links] == \
                [(r["kb_id"], round(r["score"], 5)) for r in b._.kb_links]
    assert links(single[len(TRAIN)]) == [] and links(single[len(TRAIN) + 1]) == []


def test_n_process_2_equals_serial(trained):
    texts = [t for t, _ in TRAIN] * 2
    serial = [links(d) for d in trained.pipe(texts)]
    parallel = [links(d) for d in trained.pipe(texts, n_process=2, batch_size=2)]
    assert parallel == serial
    assert any(serial)


def test_links_far_into_a_long_document(trained):
    filler = "The weather was cold and grey that morning. " * 150
    text = filler + "Barack Obama visited Berlin last week."
    doc = trained(text)
    n = len(doc)
    assert len(doc._.entqa_candidates) > 60
    assert doc._.entqa_candidates[-1]["end"] == n
    # the mentions at the very end are found at their document offsets
    assert {(n - 7, n - 5, "Q76"), (n - 4, n - 3, "Q64")} <= set(links(doc))


@pytest.mark.slow
def test_100k_token_document(trained):
    # 9 tokens a sentence: 11,112 sentences make the document longer than 100,000 tokens
    text = "The weather was cold and grey that morning. " * 11112 + "Barack Obama visited Berlin."
    doc = trained(text)
    assert len(doc) > 100000
    assert ("Q76" in {s.kb_id_ for s in doc.spans["entqa"]})


def test_existing_ents_are_respected_or_replaced(trained):
    # the retrieve-then-read path (existing ents as hints: tests/pipeline/test_entqa_hinted.py)
    linker = trained.get_pipe("entqa_linker")
    linker.cfg["mention_hints"] = None
    doc = trained.make_doc("Barack Obama visited Berlin last week.")
    doc.ents = [Span(doc, 0, 1, label="PERSON"), Span(doc, 3, 4, label="GPE")]
    doc = linker(doc)
    assert [(e.start, e.end, e.label_, e.kb_id_) for e in doc.ents] == \
        [(0, 1, "PERSON", ""), (3, 4, "GPE", "Q64")]
    linker.cfg["overwrite_ents"] = True
    try:
        doc = trained.make_doc("Barack Obama visited Berlin last week.")
        doc.ents = [Span(doc, 0, 1, label="PERSON")]
        doc = linker(doc)
        assert [(e.start, e.end, e.kb_id_) for e in doc.ents] == [(0, 2, "Q76"), (3, 4, "Q64")]
    finally:
        linker.cfg["overwrite_ents"] = False
        linker.cfg["mention_hints"] = "ents"


def test_evaluate_returns_the_declared_keys(trained):
    examples = [Example(trained.make_doc(d.text), d) for d in gold_docs(English())]
    scores = trained.evaluate(examples)
    weights = trained.get_pipe_meta("entqa_linker").default_score_weights
    assert set(weights) <= set(scores)
    assert 0.5 < scores["el_micro_f"] <= 1.0  # the training docs themselves
    # spaCy's own keys for nel are not used
    assert not any(k.startswith("nel_") for k in scores)


@pytest.mark.parametrize("kind", ["som", "multi", "poly"])
def test_other_score_functions_use_an_entity_cache_that_round_trips(kind):
    nlp = English()
    cfg = dict(CONFIG)
    cfg["retriever"] = {"@architectures": "spacy_kbnlp.EntQARetriever.v1",
                        "score": {"@misc": {"som": "spacy_kbnlp.SumOfMaxScore.v1",
                                            "multi": "spacy_kbnlp.MultiVectorScore.v1",
                                            "poly": "spacy_kbnlp.PolyScore.v1"}[kind]}}
    cfg["top_k"] = 2
    linker = nlp.add_pipe("entqa_linker", config=cfg)
    linker.initialize(kb_loader=lambda vocab: make_kb())
    assert linker.entity_cache is not None and linker.entity_cache[0].shape[0] == len(RECORDS)
    scores, rows = linker.retrieve(list(p for p, _ in linker.passages(
        [nlp.make_doc("Barack Obama visited Berlin")])))
    if kind != "poly":  # poly's code vectors are untrained here
        assert {linker.kb.ids[r] for r in rows[0]} == {"Q76", "Q64"}
    doc = nlp("Barack Obama visited Berlin")
    with make_tempdir() as tmp:
        nlp.to_disk(tmp)
        loaded = spacy.load(tmp)
        linker2 = loaded.get_pipe("entqa_linker")
        numpy.testing.assert_allclose(linker2.entity_cache[0], linker.entity_cache[0], atol=2e-3)
        doc2 = loaded("Barack Obama visited Berlin")
    assert doc2._.entqa_candidates[0]["candidates"][0][0] == doc._.entqa_candidates[0]["candidates"][0][0]


def test_single_entity_kb():
    nlp = English()
    linker = nlp.add_pipe("entqa_linker", config=CONFIG)
    linker.initialize(kb_loader=lambda vocab: make_kb(RECORDS[:1]), reencode_kb=True)
    doc = nlp("Barack Obama visited Berlin.")
    assert [c[0] for c in doc._.entqa_candidates[0]["candidates"]] == ["Q76"]
    assert all(s.kb_id_ == "Q76" for s in doc.spans["entqa"])


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _tiny_inputs(tmp):
    make_kb().to_disk(tmp / "kb")
    docs = gold_docs(English())
    DocBin(docs=docs, store_user_data=True).to_disk(tmp / "train.spacy")
    DocBin(docs=docs[:2], store_user_data=True).to_disk(tmp / "dev.spacy")
    return {"paths.train": str(tmp / "train.spacy"), "paths.dev": str(tmp / "dev.spacy"),
            "paths.kb": str(tmp / "kb")}


@pytest.mark.parametrize("name", ["entqa.cfg", "entqa_faithful.cfg", "test/entqa.cfg"])
def test_shipped_configs_build_with_init_nlp(name, tmp_path):
    from spacy.training.initialize import init_nlp
    from spacy.util import load_config

    config = load_config(CONFIGS / name, overrides=_tiny_inputs(tmp_path), interpolate=False)
    nlp = init_nlp(config)
    linker = nlp.get_pipe("entqa_linker")
    assert nlp.pipe_names == ["entqa_linker"] and linker.is_initialized
    assert linker.kb.encoder_name.startswith("entqa-retriever-")  # re-encoded once
    assert linker.reader.spec.packed == (name != "entqa_faithful.cfg")
    doc = nlp("Barack Obama visited Berlin.")
    assert doc._.entqa_candidates and "entqa" in doc.spans


@pytest.mark.slow
def test_tiny_el_workflow_train_assemble_calibrate_evaluate(tmp_path):
    """The `el` workflow's commands on tiny data (the project's smoke run)."""
    from spacy.util import load_config

    from spacy_kbnlp.cli.entqa import assemble, calibrate, split_corpus
    from spacy_kbnlp.cli.evaluate import evaluate
    from spacy_kbnlp.training.entqa import train_reader, train_retriever

    paths = _tiny_inputs(tmp_path)
    counts = split_corpus([paths["paths.train"]], tmp_path / "t.spacy", tmp_path / "d.spacy",
                          every=2)
    assert counts == {"train": 2, "dev": 2}
    cfg_path = CONFIGS / "test" / "entqa.cfg"
    config = load_config(cfg_path, overrides=paths, interpolate=True)
    summary = train_retriever(config, tmp_path / "retriever", show_progress=False)
    assert summary["steps"] == 2 and (tmp_path / "retriever" / "model-best" / "spec.json").exists()
    paths["paths.retriever"] = str(tmp_path / "retriever" / "model-last")
    config = load_config(cfg_path, overrides=paths, interpolate=True)
    summary = train_reader(config, tmp_path / "reader", show_progress=False)
    assert summary["steps"] == 2
    # resume continues from the checkpoint (nothing left to do after 2 of 2 steps)
    again = train_reader(config, tmp_path / "reader", resume=True, show_progress=False)
    assert again["steps"] == 2
    paths["paths.reader"] = str(tmp_path / "reader" / "model-last")
    out = assemble(cfg_path, tmp_path / "pipeline", paths)
    result = calibrate(out, paths["paths.dev"], tmp_path / "calibrated")
    assert 0.0 <= result["threshold"] < 1.0 and result["curve"]
    loaded = spacy.load(tmp_path / "calibrated")
    assert loaded.get_pipe("entqa_linker").cfg["threshold"] == pytest.approx(result["threshold"])
    assert loaded.config["components"]["entqa_linker"]["threshold"] == pytest.approx(result["threshold"])
    metrics = evaluate("el", tmp_path / "calibrated", paths["paths.dev"], "spacy",
                       spans_key="entqa", kb=paths["paths.kb"], show_progress=False, quiet=True)
    assert metrics["el_micro_f"] == pytest.approx(result["dev_f"])


def _fit_reader_with(learning_rate, head_lr_scale, steps=20):
    """Train a fresh packed reader on the tiny example as ``train_reader`` does (frozen
    embeddings, ``make_optimizer`` with the heads' rate scaled) and decode every
    training passage with all KB entities as candidates: (gold mentions found as
    the best span of their entity, gold mentions, spans predicted for entities that
    are not mentioned)."""
    from spacy_kbnlp.kb.records import entity_texts
    from spacy_kbnlp.models.passages import entity_pieces
    from spacy_kbnlp.models.reader import build_inputs, entqa_packed_reader, reader_probs, top_spans
    from spacy_kbnlp.training.entqa import freeze_embeddings, scale_head_lr
    from spacy_kbnlp.training.loop import TrainingConfig, make_optimizer

    torch.manual_seed(0)
    reader = entqa_packed_reader().build()
    freeze_embeddings(reader)
    scale_head_lr(reader, head_lr_scale)
    opt = make_optimizer(reader, TrainingConfig(learning_rate=learning_rate))
    tps = training_passages(gold_docs(English()), reader.tokenizer, length=16, stride=8)
    ids = [r.id for r in RECORDS]
    pieces = dict(zip(ids, entity_pieces(reader.tokenizer, entity_texts(RECORDS), 16)))
    rng = random.Random(0)
    reader.train()
    for _ in range(steps):
        cands = [reader_candidates(tp, ids, len(ids), rng) for tp in tps]
        loss = reader_batch_loss(reader, tps, cands, pieces.__getitem__)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reader.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    reader.eval()
    found = n_gold = wrong = 0
    for tp in tps:
        inputs = build_inputs(reader.spec, reader.tokenizer, [tp.passage], [[pieces[q] for q in ids]])
        with torch.inference_mode():
            out = reader_probs(*reader(inputs), inputs.pairs, 1)
        spans = top_spans(out.start_logp, out.end_logp, 10, 1)
        for (_, ci), best in zip(out.pairs, spans):
            golds = tp.golds.get(ids[ci], [])
            n_gold += len(golds)
            found += sum(1 for s, e, _ in best if (s, e) in golds)
            wrong += sum(1 for s, e, _ in best if (s, e) not in golds)
    return found, n_gold, wrong


def test_shipped_reader_settings_train_the_span_heads():
    """Regression: with the fast config's reader settings (encoder rate, heads at
    ``head_lr_scale`` x that rate) 8 steps teach every gold mention of the tiny
    example as the best span of its entity and no span for the others. With one
    rate of 5e-5 for all parameters the fresh heads hardly moved (0 of 7 here) and
    the trained pipeline linked almost nothing (dev recall 0.006)."""
    from spacy.util import load_config

    rcfg = load_config(CONFIGS / "entqa.cfg", interpolate=True)["entqa_training"]["reader"]
    found, n_gold, wrong = _fit_reader_with(rcfg["torch_training"]["learning_rate"],
                                            rcfg["head_lr_scale"], steps=8)
    assert (found, n_gold, wrong) == (7, 7, 0)


def test_linked_entity_stays_among_its_alternatives():
    """An entity whose best span lies elsewhere can outscore the link on the
    link's span; the link is then kept as the last of the ranked alternatives."""
    from spacy_kbnlp.pipeline.entqa_linker import _keep_own

    alts = [["Q1", 0.9], ["Q2", 0.5], ["Q3", 0.2], ["Q4", 0.1]]
    assert _keep_own(alts, "Q2", 0.5, 2) == [["Q1", 0.9], ["Q2", 0.5]]
    assert _keep_own(alts, "Q4", 0.1, 2) == [["Q1", 0.9], ["Q4", 0.1]]
    assert _keep_own(alts, "Q4", 0.1, 5) == alts
    assert _keep_own(alts, "Q4", 0.1, 0) == []


def test_load_config_overrides_and_reader_architecture(trained, tmp_path):
    """nlp.config is the one source of settings: the component's ``cfg`` file holds
    derived state only, so ``spacy.load(path, config=...)`` overrides what was
    saved; a config asking for another reader architecture than the saved reader is
    KBE161 (it used to run the saved one silently)."""
    import srsly
    from thinc.api import Config

    text = TRAIN[1][0]
    expected = links(trained(text))
    assert expected
    trained.to_disk(tmp_path)
    assert srsly.read_json(tmp_path / "entqa_linker" / "cfg") == {"format_version": 1}
    loaded = spacy.load(tmp_path, config={"components": {"entqa_linker": {
        "spans_key": "other", "set_ents": False, "threshold": 0.5}}})
    linker = loaded.get_pipe("entqa_linker")
    assert (linker.cfg["spans_key"], linker.cfg["set_ents"], linker.cfg["threshold"]) == \
        ("other", False, 0.5)
    doc = loaded(text)
    assert "entqa" not in doc.spans and list(doc.ents) == []
    assert links(doc, "other") == [x for x in expected if x in links(doc, "other")]
    assert all(s._.link_score > 0.5 for s in doc.spans["other"])
    config = Config().from_disk(tmp_path / "config.cfg", interpolate=False)
    config["components"]["entqa_linker"]["reader"] = {
        "@architectures": "spacy_kbnlp.EntQAReader.v1", "name": None}
    config.to_disk(tmp_path / "config.cfg")
    with pytest.raises(ValueError, match="KBE161.*EntQAPackedReader.v1"):
        spacy.load(tmp_path)


def test_initialize_with_a_reader_of_another_architecture_is_an_error():
    """The shipped reader is per-candidate (``EntQAReader.v1``): a linker configured
    with the packed reader (the default) may not run it silently (KBE161); configured
    with the saved reader's block (``saved_reader_config``) it loads."""
    from spacy_kbnlp.linking.bundled import BUNDLED_READER
    from spacy_kbnlp.models.reader import saved_reader_config

    packed = English().add_pipe("entqa_linker", config={"quantize": False})
    with pytest.raises(ValueError, match="KBE161.*EntQAReader.v1.*EntQAPackedReader.v1"):
        packed.initialize(kb_loader=lambda vocab: make_kb(), reader_path=str(BUNDLED_READER),
                          reencode_kb=True)
    block = saved_reader_config(BUNDLED_READER)
    assert block["@architectures"] == "spacy_kbnlp.EntQAReader.v1"
    linker = English().add_pipe("entqa_linker", config={"quantize": False, "reader": block})
    linker.initialize(kb_loader=lambda vocab: make_kb(), reader_path=str(BUNDLED_READER),
                      reencode_kb=True)
    assert not linker.reader.spec.packed and linker.is_initialized
