"""``evaluate``: a pipeline over gold files, scored with our metrics (hand-computed)."""
import json

import pytest
import spacy
from spacy.language import Language
from spacy.util import make_tempdir
from typer.testing import CliRunner

from spacy_kbnlp.cli import app
from spacy_kbnlp.cli.evaluate import evaluate, input_doc
from spacy_kbnlp.extensions import add_relation, set_coref_clusters
from tests.scorers import ruler_nlp

RUNNER = CliRunner()


# ---------------------------------------------------------------- test components
# (spaCy forbids "." in component names, so the test doubles use a "test_" prefix)

COREF_GROUPS = ({"Anna", "she"}, {"dog", "It", "it"})


@Language.component("test_coref_writer")
def coref_writer(doc):
    """One cluster per word group of COREF_GROUPS (one-token mentions, in order)."""
    clusters = [[(t.i, t.i + 1) for t in doc if t.text in group] for group in COREF_GROUPS]
    set_coref_clusters(doc, [c for c in clusters if c])
    return doc


REL_BY_TYPES = {("Peop", "Org"): "Work_For", ("Peop", "Loc"): "Live_In",
                ("Loc", "Loc"): "Located_In"}


@Language.component("test_rel_writer")
def rel_writer(doc):
    """A relation for every ordered entity pair whose types are in REL_BY_TYPES."""
    for i, head in enumerate(doc.ents):
        for tail in doc.ents[i + 1:]:
            label = REL_BY_TYPES.get((head.label_, tail.label_))
            if label:
                add_relation(doc, head, tail, label, 0.9)
    return doc


@Language.component("test_semeval_writer")
def semeval_writer(doc):
    """Always Member-Collection(e2,e1)."""
    e1, e2 = sorted(doc.ents, key=lambda e: e.start)
    add_relation(doc, e2, e1, "Member-Collection", 0.8)
    return doc


def test_evaluate_el_entity_ruler_hand_computed(fixtures_dir):
    """tests/fixtures/readers/el.jsonl; the ruler links by pattern id (--link-attr id).
    doc a: Paris TP, "capital" on no gold span FP, France (child of the optional NIL
    label "the capital of France") TP for that root -> 2/1/0; doc b: Merkel TP, Rome
    Q2 vs gold Q220 FN+FP, 2019 (DATETIME, optional) linked to a QID FP -> 1/2/1.
    Micro P 3/6, R 3/4, F 0.6; macro P (2/3 + 1/3)/2, R (1 + 1/2)/2, F (0.8 + 0.4)/2."""
    with make_tempdir() as tmp:
        ruler_nlp().to_disk(tmp / "pipe")
        out = evaluate("el", tmp / "pipe", fixtures_dir / "readers" / "el.jsonl", "jsonl",
                       link_attr="id", output=tmp / "m.json", quiet=True, show_progress=False)
        written = json.loads((tmp / "m.json").read_text())
    assert (out["el_tp"], out["el_fp"], out["el_fn"], out["el_gold"]) == (3, 3, 1, 4)
    assert out["el_micro_p"] == pytest.approx(0.5)
    assert out["el_micro_r"] == pytest.approx(0.75)
    assert out["el_micro_f"] == pytest.approx(0.6)
    assert out["el_macro_p"] == pytest.approx(0.5)
    assert out["el_macro_r"] == pytest.approx(0.75)
    assert out["el_macro_f"] == pytest.approx(0.6)
    assert out["docs"] == 2 and out["words"] == 14 and out["words_per_s"] > 0
    assert written == pytest.approx(out)
    # KB restriction: Q142 (France) and Q220 (Rome) are not in the KB, so they are NIL:
    # France's link is a FP, Rome's miss no FN; the KB is a JSONL of entity records
    with make_tempdir() as tmp:
        kb = tmp / "kb.jsonl"
        kb.write_text("".join(json.dumps({"id": q, "name": q}) + "\n"
                              for q in ("Q90", "Q567", "Q2")))
        out = evaluate("el", ruler_nlp(), fixtures_dir / "readers" / "el.jsonl", "jsonl",
                       link_attr="id", kb=kb, quiet=True, show_progress=False)
    assert (out["el_tp"], out["el_fp"], out["el_fn"]) == (2, 4, 0)


def test_evaluate_el_cli(fixtures_dir):
    with make_tempdir() as tmp:
        ruler_nlp().to_disk(tmp / "pipe")
        result = RUNNER.invoke(app, ["evaluate", "el", str(tmp / "pipe"),
                                     str(fixtures_dir / "readers" / "el.jsonl"), "--format",
                                     "jsonl", "--link-attr", "id", "--output",
                                     str(tmp / "m.json"), "--matching", "weak"])
        assert result.exit_code == 0, result.output
        metrics = json.loads((tmp / "m.json").read_text())
    assert (metrics["el_tp"], metrics["el_fp"], metrics["el_fn"]) == (3, 2, 1)
    assert "el_micro" in result.output and "words_per_s" in result.output
    bad = RUNNER.invoke(app, ["evaluate", "el", "/no/such/pipeline",
                              str(fixtures_dir / "readers" / "el.jsonl"), "-f", "jsonl"])
    assert bad.exit_code == 1 and "KBE107" in bad.output
    bad = RUNNER.invoke(app, ["evaluate", "ner", "x", str(fixtures_dir / "readers" / "el.jsonl"),
                              "-f", "jsonl"])
    assert bad.exit_code == 1 and "KBE103" in bad.output


def test_evaluate_coref_hand_computed(fixtures_dir):
    """c1 "Anna said she ...": perfect. c2: gold {The dog, It, it} {Anna}; predicted
    {dog, It, it} {Anna}. MUC R = P = (1 + 1) / (1 + 2); B3 R = P = (2 + 7/3) / 6;
    CEAFe R = P = (1 + 2/3 + 1) / 3; LEA R = P = (2 + 1 + 1) / 6."""
    nlp = spacy.blank("en")
    nlp.add_pipe("test_coref_writer")
    out = evaluate("coref", nlp, fixtures_dir / "readers" / "coref.jsonl", "jsonl", quiet=True,
                   show_progress=False)
    for metric, value in (("muc", 2 / 3), ("b3", 13 / 18), ("ceafe", 8 / 9), ("lea", 2 / 3)):
        for x in "prf":
            assert out[f"coref_{metric}_{x}"] == pytest.approx(value), (metric, x)
    assert out["coref_conll_f"] == pytest.approx((2 / 3 + 13 / 18 + 8 / 9) / 3)
    assert out["coref_docs"] == 2
    # singletons dropped: c2 loses {Anna} on both sides
    out = evaluate("coref", nlp, fixtures_dir / "readers" / "coref.jsonl", "jsonl", quiet=True,
                   show_progress=False, drop_singletons=True)
    assert out["coref_b3_r"] == pytest.approx((2 + 4 / 3) / 5)


def test_evaluate_re_given_entities(fixtures_dir):
    """r1: Work_For TP. r2: Live_In(John, Boston) TP, Located_In(Boston, Cambridge) TP,
    Live_In(John, Cambridge) FP -> P 3/4, R 1."""
    nlp = spacy.blank("en")
    nlp.add_pipe("test_rel_writer")
    out = evaluate("re", nlp, fixtures_dir / "readers" / "re.jsonl", "jsonl", quiet=True,
                   show_progress=False)
    assert (out["rel_tp"], out["rel_fp"], out["rel_fn"]) == (3, 1, 0)
    assert out["rel_micro_p"] == pytest.approx(0.75) and out["rel_strict_r"] == 1.0
    # without the gold entities the pipeline finds no entity and no relation
    out = evaluate("re", nlp, fixtures_dir / "readers" / "re.jsonl", "jsonl", quiet=True,
                   show_progress=False, gold_ents=False)
    assert (out["rel_tp"], out["rel_fn"], out["rel_ner_r"]) == (0, 3, 0.0)


def test_evaluate_re_semeval_official(fixtures_dir):
    """Member-Collection(e2,e1) for all 3 sentences: MC P 1/3 R 1 F 1/2; Entity-
    Destination F 0; official macro F1 over the 2 gold types = 0.25."""
    nlp = spacy.blank("en")
    nlp.add_pipe("test_semeval_writer")
    with make_tempdir() as tmp:
        result = RUNNER.invoke(app, ["evaluate", "re", "x", "--help"])
        assert result.exit_code == 0
        out = evaluate("re", nlp, fixtures_dir / "readers" / "semeval_sample.semeval.txt",
                       "semeval2010", semeval=True, quiet=True, show_progress=False,
                       output=tmp / "m.json")
        assert json.loads((tmp / "m.json").read_text())["rel_semeval_f"] == pytest.approx(0.25)
    assert out["rel_semeval_f"] == pytest.approx(0.25)


def test_input_doc_keeps_tokens_not_links(fixtures_dir):
    from spacy_kbnlp.readers import read_jsonl

    nlp = spacy.blank("en")
    gold = next(read_jsonl(fixtures_dir / "readers" / "el.jsonl", nlp))
    doc = input_doc(nlp, gold, gold_ents=True)
    assert [t.text for t in doc] == [t.text for t in gold] and doc.text == gold.text
    assert [e.text for e in doc.ents] == [e.text for e in gold.ents]
    assert all(e.kb_id_ == "" for e in doc.ents)
