"""entqa_linker's default (hinted) mode: mention hints from the pipeline, entity
priors, hybrid candidates and the final scorer; each signal is optional and
round-trips with the component."""
import numpy
import pytest
import spacy
from spacy.lang.en import English
from spacy.util import make_tempdir

from spacy_kbnlp.kb.dense_kb import DenseKB
from spacy_kbnlp.kb.records import EntityRecord
from spacy_kbnlp.linking.hinted import (FEATURES, FinalScorer, alias_spans, fit_final_scorer,
                                        hint_spans, merge_hints)
from spacy_kbnlp.linking.priors import PriorTable, normalize_surface
from spacy_kbnlp.training.final_scorer import fit_hinted

from .test_entqa_linker import gold_docs as el_gold_docs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RECORDS = [
    EntityRecord("Q76", "Barack Obama", "44th president of the United States", ["Obama"]),
    EntityRecord("Q64", "Berlin", "capital and largest city of Germany"),
    EntityRecord("Q821244", "Berlin", "city in Coos County, New Hampshire, United States"),
    EntityRecord("Q567", "Angela Merkel", "chancellor of Germany from 2005 to 2021", ["Merkel"]),
    EntityRecord("Q90", "Paris", "capital and largest city of France"),
    EntityRecord("Q312", "Apple Inc.", "American technology company", ["Apple"]),
]
TRAIN = [
    ("Barack Obama visited Berlin last week.", [(0, 12, "Q76"), (21, 27, "Q64")]),
    ("Angela Merkel met Obama in Paris.", [(0, 13, "Q567"), (18, 23, "Q76"), (27, 32, "Q90")]),
    ("Merkel flew from Berlin to Paris.", [(0, 6, "Q567"), (17, 23, "Q64"), (27, 32, "Q90")]),
    ("Apple opened a store in Berlin.", [(0, 5, "Q312"), (24, 30, "Q64")]),
    ("Ms. Smith said nothing at all.", []),
]
PATTERNS = [{"label": "HINT", "pattern": p} for p in
            ("Barack Obama", "Obama", "Berlin", "Angela Merkel", "Merkel", "Paris", "Apple",
             "Ms. Smith")]


def gold_docs(nlp, data=TRAIN):
    return el_gold_docs(nlp, data)


def hinted_nlp(kb, **cfg):
    """span_ruler (hints in doc.spans["hints"]) + entqa_linker (zero-shot MiniLM)."""
    nlp = English()
    ruler = nlp.add_pipe("span_ruler", config={"spans_key": "hints"})
    ruler.add_patterns(PATTERNS)
    linker = nlp.add_pipe("entqa_linker", config={"mention_hints": "hints", "top_k": 4,
                                                  "adaptive_margin": None, **cfg})
    linker.initialize(kb_loader=DenseKB.from_bytes(kb.to_bytes()), reencode_kb=True)
    return nlp


@pytest.fixture(scope="module")
def kb(encoder):
    return DenseKB.build(RECORDS, encoder)


@pytest.fixture(scope="module")
def fitted(kb):
    nlp = hinted_nlp(kb)
    gold = gold_docs(nlp)
    report = fit_hinted(nlp, gold, gold, linker_name="entqa_linker", epochs=400)
    return nlp, report


def links(doc, key="entqa"):
    return [(s.text, s.kb_id_) for s in doc.spans[key]]


def test_normalize_surface_and_prior_table_leave_one_out():
    assert normalize_surface("  The   U.S.'s ") == "u.s"
    assert normalize_surface("The Hague") == "hague"
    t = PriorTable()
    t.add_links([("Berlin", "Q64"), ("Berlin", "Q64"), ("Berlin", "Q821244")])
    assert t.prob("berlin", "Q64") == pytest.approx(2 / 3)
    assert t.candidates("BERLIN", 1) == [("Q64", pytest.approx(2 / 3))]
    before = t.to_dict()
    t.subtract_links([("Berlin", "Q821244")])
    assert t.prob("Berlin", "Q64") == 1.0 and t.link_mass("Berlin") == 2.0
    t.add("Berlin", "Q821244", link=True)
    assert t.to_dict()["counts"] == before["counts"]


def test_merge_hints_and_alias_spans_give_exact_spans():
    nlp = English()
    doc = nlp("He moved to Denver, Colorado and met the New York Times editor.")
    t = PriorTable()
    t.add("Denver, Colorado", "Q16554")
    t.add("New York Times", "Q9684")
    hints = [doc[3:4], doc[5:6]]
    merged = merge_hints(doc, hints, t)
    assert [(s.start, s.end) for s in merged] == [(3, 6)]
    assert [(s.text) for s in alias_spans(doc, t, merged)] == ["New York Times"]
    # no prior mass: the hints stay as they were
    assert [(s.start, s.end) for s in merge_hints(doc, hints, PriorTable())] == [(3, 4), (5, 6)]


def test_hint_spans_drop_numbers_and_leading_the():
    nlp = English()
    doc = nlp("The United States spent 5 dollars")
    from spacy.tokens import Span
    doc.ents = [Span(doc, 0, 3, label="GPE"), Span(doc, 4, 6, label="MONEY")]
    assert [(s.text, s.label_) for s in hint_spans(doc, "ents")] == [("United States", "GPE")]
    assert hint_spans(nlp("no annotation"), "ents") == []


def test_overfit_tiny_set_gives_exact_links(fitted):
    nlp, report = fitted
    assert report["train"]["gold_mentions"] == 10
    assert report["train"]["gold_hinted"] == 10
    assert report["dev"]["f"] == 1.0
    doc = nlp("Angela Merkel visited Berlin.")
    assert links(doc) == [("Angela Merkel", "Q567"), ("Berlin", "Q64")]
    for span in doc.spans["entqa"]:
        cands = span._.kb_candidates
        assert cands[0][0] == span.kb_id_ and 0.5 < span._.link_score <= 1.0
    assert links(nlp("Ms. Smith said nothing at all.")) == []


def test_hints_change_the_result_and_are_optional(fitted, kb):
    nlp, _ = fitted
    text = "Angela Merkel visited Berlin."
    hinted = nlp(text)
    # the same component without hints: the retrieve-then-read path, exactly the links
    # of a linker whose hints are switched off
    linker = nlp.get_pipe("entqa_linker")
    with nlp.select_pipes(disable=["span_ruler"]):
        plain = nlp(text)
    off = hinted_nlp(kb, mention_hints=None)
    with off.select_pipes(disable=["span_ruler"]):
        reference = off(text)
    assert links(plain) == links(reference)
    assert plain._.kb_links == reference._.kb_links
    assert links(hinted) != links(plain)
    assert linker.cfg["mention_hints"] == "hints"
    # hints also come from doc.ents (an upstream NER)
    linker.cfg["mention_hints"] = "ents"
    try:
        with nlp.select_pipes(disable=["span_ruler"]):
            doc = nlp.make_doc(text)
            from spacy.tokens import Span
            doc.ents = [Span(doc, 0, 2, label="PERSON"), Span(doc, 3, 4, label="GPE")]
            out = linker(doc)
        assert [(s.text, s.kb_id_, s.label_) for s in out.spans["entqa"]] == \
            [("Angela Merkel", "Q567", "PERSON"), ("Berlin", "Q64", "GPE")]
        # the NER's own entities keep their labels and get the links
        assert [(e.text, e.kb_id_, e.label_) for e in out.ents] == \
            [("Angela Merkel", "Q567", "PERSON"), ("Berlin", "Q64", "GPE")]
    finally:
        linker.cfg["mention_hints"] = "hints"


def test_priors_and_final_scorer_round_trip_with_the_component(fitted):
    nlp, _ = fitted
    linker = nlp.get_pipe("entqa_linker")
    assert linker.priors.link_mass("Berlin") == 3.0
    texts = ["Angela Merkel visited Berlin.", "Obama and Merkel in Paris."]
    before = [nlp(t) for t in texts]
    with make_tempdir() as tmp:
        nlp.to_disk(tmp)
        loaded = spacy.load(tmp)
        ll = loaded.get_pipe("entqa_linker")
        assert ll.priors == linker.priors
        assert ll.final_scorer == linker.final_scorer
        assert ll.hint_threshold == linker.hint_threshold > 0
        after = [loaded(t) for t in texts]
        assert [d._.kb_links for d in after] == [d._.kb_links for d in before]
        # a flipped byte in the weights is a coded error, not silently other scores
        path = tmp / "entqa_linker" / "hints" / "scorer.safetensors"
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        with pytest.raises(ValueError, match="KBE159.*scorer.safetensors"):
            spacy.load(tmp)
    nlp2 = hinted_nlp(linker.kb)
    nlp2.get_pipe("entqa_linker").from_bytes(linker.to_bytes())
    assert nlp2.get_pipe("entqa_linker").priors == linker.priors
    assert [nlp2(t)._.kb_links for t in texts] == [d._.kb_links for d in before]


def test_final_scorer_fits_and_refuses_other_features(tmp_path):
    rng = numpy.random.default_rng(0)
    groups = []
    for i in range(40):  # gold = the candidate with the highest "prior" feature, or NIL
        x = rng.normal(size=(4, len(FEATURES))).astype("float32")
        gold = int(x[:, 0].argmax()) if i % 4 else -1
        if gold < 0:
            x[:, 0] = -3.0
        groups.append((x, gold))
    scorer = fit_final_scorer(groups, epochs=400)
    right = sum((int(scorer.link_probs(x).argmax()) == g and scorer.link_probs(x).max() > 0.5)
                if g >= 0 else scorer.link_probs(x).max() < 0.5 for x, g in groups)
    assert right == len(groups)
    scorer.to_disk(tmp_path)
    again = FinalScorer.from_disk(tmp_path)
    assert again == scorer
    assert numpy.array_equal(again.link_probs(groups[1][0]), scorer.link_probs(groups[1][0]))
    other = FinalScorer(scorer.weights, FEATURES[:-1])
    with pytest.raises(ValueError, match="KBE214"):
        other.link_probs(groups[1][0])
    with pytest.raises(FileNotFoundError, match="KBE215"):
        FinalScorer.from_disk(tmp_path / "missing")
    with pytest.raises(ValueError, match="KBE217"):
        fit_final_scorer([])


def test_bad_input_keeps_every_doc(fitted):
    nlp, _ = fitted
    texts = ["", "   \n\t ", "Berlin", "Ünïcödé → 🤖 Berlin ​ zero​width", "Paris. " * 3]
    docs = list(nlp.pipe(texts, batch_size=2))
    assert [d.text for d in docs] == texts
    assert links(docs[2]) == [("Berlin", "Q64")]
    assert links(docs[0]) == [] and links(docs[1]) == []
    assert [links(d) for d in docs] == [links(nlp(t)) for t in texts]


def test_bad_settings_are_coded_errors():
    nlp = English()
    with pytest.raises(ValueError, match="KBE218"):
        nlp.add_pipe("entqa_linker", config={"mention_hints": " "})
    with pytest.raises(ValueError, match="KBE205"):
        English().add_pipe("entqa_linker", config={"hint_threshold": 1.5})


def test_single_entity_kb_and_kb_of_another_encoder(fitted, encoder):
    nlp, _ = fitted
    one = DenseKB.build(RECORDS[1:2], encoder)
    small = hinted_nlp(one)  # a KB of MiniLM vectors, re-encoded by the linker
    linker = small.get_pipe("entqa_linker")
    linker.set_final_scorer(nlp.get_pipe("entqa_linker").final_scorer, 0.01)
    doc = small("Angela Merkel visited Berlin.")
    assert [s.kb_id_ for s in doc.spans["entqa"]] in ([], ["Q64"])
    assert all(s.text == "Berlin" for s in doc.spans["entqa"])


@pytest.mark.slow
def test_100k_token_document_with_hints(fitted):
    nlp, _ = fitted
    text = "Angela Merkel visited Berlin. " * 20000
    doc = nlp(text)
    assert len(doc) == 100000
    found = links(doc)
    assert len(found) == 40000 and set(found) == {("Angela Merkel", "Q567"), ("Berlin", "Q64")}


def test_one_pass_reader_overfits_a_tiny_set_and_round_trips(fitted, tmp_path):
    """The one-pass reader (passage read once, candidates as soft tokens) learns the
    tiny training set: each gold mention's entity scores highest and above NIL, the
    NIL mention below it; saved as a delta from MiniLM it scores identically."""
    import torch

    from spacy_kbnlp.models.onepass import load_onepass, save_onepass, window_items
    from spacy_kbnlp.training.final_scorer import annotate_inputs, inkb_gold
    from spacy_kbnlp.training.onepass import train_onepass

    nlp, _ = fitted
    linker = nlp.get_pipe("entqa_linker")
    gold = gold_docs(nlp)
    docs = annotate_inputs(nlp, gold, "entqa_linker")
    mentions, targets = [], []
    ids = linker.kb_ids
    for doc, g in zip(docs, gold):
        wanted = inkb_gold(g, set(ids))
        for m in linker.hinted_mentions([doc]):
            q = wanted.get((m.start_char, m.end_char))
            rows = [ids[r] for r in m.rows]
            mentions.append(m)
            targets.append(rows.index(q) if q in rows else -1)
    assert targets.count(-1) == 1 and len(targets) == 11  # "Ms. Smith" is NIL
    torch.manual_seed(0)
    reader, report = train_onepass(linker, mentions, targets,
                                   {"max_epochs": 40, "batch_size": 5, "learning_rate": 1e-4,
                                    "warmup_ratio": 0.0}, tmp_path / "run")
    assert report["windows"] == 5
    items, where = window_items(mentions, reader.spec.max_candidates, targets)
    with torch.inference_mode():
        scores = reader(items, linker.kb.vectors)
    for (item, pos, kept), gold_idx in zip(where, targets):
        s = scores[item][pos]
        if gold_idx >= 0:
            assert kept[int(s.argmax())] == gold_idx and float(s.max()) > 0.0
        else:
            assert float(s.max()) < 0.0
    save_onepass(reader, tmp_path / "onepass")
    again = load_onepass(tmp_path / "onepass")
    with torch.inference_mode():
        scores2 = again(items, linker.kb.vectors)
    for a, b in zip(scores, scores2):
        for x, y in zip(a, b):
            assert torch.allclose(x, y, atol=0.05)
    # int8 difference of the six layers, the new heads whole (measured 12.2 MiB; MiniLM is 87 MiB)
    assert (tmp_path / "onepass" / "delta.safetensors").stat().st_size < 16 * 2**20


def test_fit_with_one_pass_reader_features_round_trips(kb, tmp_path):
    """fit_hinted with a one-pass reader: the scorer is fitted on its features (out of
    sample for the training docs), the pipeline saves the reader as hints/onepass and
    loads to the same links; a scorer fitted on reader features refuses a linker
    without the reader."""
    import torch

    torch.manual_seed(0)
    nlp = hinted_nlp(kb)
    gold = gold_docs(nlp)
    report = fit_hinted(nlp, gold, gold, epochs=400,
                        onepass={"max_epochs": 3, "batch_size": 4, "learning_rate": 1e-4},
                        onepass_dir=str(tmp_path / "runs"))
    linker = nlp.get_pipe("entqa_linker")
    assert linker.final_scorer.uses_reader and report["onepass"]["all"]["windows"] == 5
    texts = ["Angela Merkel visited Berlin.", "Obama and Merkel in Paris."]
    before = [nlp(t) for t in texts]
    assert links(before[0]) == [("Angela Merkel", "Q567"), ("Berlin", "Q64")]
    nlp.to_disk(tmp_path / "p")
    assert (tmp_path / "p" / "entqa_linker" / "hints" / "onepass" / "spec.json").exists()
    loaded = spacy.load(tmp_path / "p")
    assert [links(loaded(t)) for t in texts] == [links(d) for d in before]
    loaded.get_pipe("entqa_linker").set_onepass(None)
    with pytest.raises(ValueError, match="KBE214"):
        loaded(texts[0])


def test_hints_with_a_score_without_kb_vectors_fall_back_with_a_warning(kb):
    """The hinted mode compares mentions with the KB's vectors, which only the dual
    score shares; with another score the hinted docs are retrieved and read (the
    same links as without hints), with a coded warning, and fitting is refused."""
    nlp = English()
    ruler = nlp.add_pipe("span_ruler", config={"spans_key": "hints"})
    ruler.add_patterns(PATTERNS)
    cfg = {"mention_hints": "hints", "top_k": 2, "adaptive_margin": None,
           "retriever": {"@architectures": "spacy_kbnlp.EntQARetriever.v1",
                         "score": {"@misc": "spacy_kbnlp.MultiVectorScore.v1"}}}
    linker = nlp.add_pipe("entqa_linker", config=cfg)
    linker.initialize(kb_loader=DenseKB.from_bytes(kb.to_bytes()))
    text = "Angela Merkel visited Berlin."
    with pytest.warns(UserWarning, match="KBW201"):
        hinted = nlp(text)
    linker.cfg["mention_hints"] = None
    plain = nlp(text)
    assert hinted._.kb_links == plain._.kb_links
    linker.cfg["mention_hints"] = "hints"
    with pytest.raises(ValueError, match="KBE217"):
        fit_hinted(nlp, gold_docs(nlp), [])


@pytest.mark.parametrize("asset,loader", [("entqa_reader", "reader"), ("seq2seq_coref", "coref")])
def test_bundled_weights_are_checked_against_their_sha256(asset, loader, tmp_path):
    """The shipped deltas carry their sha256 in the spec next to them; a flipped byte is
    KBE159 on load instead of silently other scores."""
    import shutil

    from spacy_kbnlp.linking.bundled import ASSETS

    copy = tmp_path / asset
    shutil.copytree(ASSETS / asset, copy)
    data = bytearray((copy / "delta.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "delta.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="KBE159"):
        if loader == "reader":
            from spacy_kbnlp.models.reader import load_reader

            load_reader(copy)
        else:
            from spacy_kbnlp.cli.demo import run_bundled_coref

            run_bundled_coref("Anna said she would come.", model=copy, printer=lambda *a, **k: None)
