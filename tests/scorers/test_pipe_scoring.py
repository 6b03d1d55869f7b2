"""The registered scorers inside spaCy: a component's ``scorer`` setting, ``Pipe.score``
passing the whole ``cfg`` as keyword arguments, and ``nlp.evaluate``."""
import pytest
import spacy
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Span
from spacy.training import Example

from spacy_kbnlp.extensions import add_relation, set_coref_clusters
from spacy_kbnlp.readers import read_jsonl


class EchoLinker(Pipe):
    """Links "Paris" to Q90 in the span group ``cfg["spans_key"]``."""

    def __init__(self, vocab, name, spans_key, threshold, scorer):
        self.vocab, self.name, self.scorer = vocab, name, scorer
        self.cfg = {"spans_key": spans_key, "threshold": threshold, "overwrite": False}

    def __call__(self, doc):
        doc.spans[self.cfg["spans_key"]] = [Span(doc, t.i, t.i + 1, label="E", kb_id="Q90")
                                            for t in doc if t.text == "Paris"]
        return doc


@Language.factory("test_echo_linker", default_config={
    "spans_key": "test_links", "threshold": 0.5,
    "scorer": {"@scorers": "spacy_kbnlp.el_scorer.v1"}},
    default_score_weights={"el_micro_f": 1.0, "el_micro_p": None, "el_micro_r": None})
def make_echo_linker(nlp, name, spans_key, threshold, scorer):
    return EchoLinker(nlp.vocab, name, spans_key, threshold, scorer)


@Language.component("test_gold_coref")
def gold_coref(doc):
    set_coref_clusters(doc, [[(0, 1), (2, 3)]])
    return doc


def test_nlp_evaluate_el_uses_component_cfg(fixtures_dir):
    """The scorer reads the component's ``spans_key`` from cfg (no setting in the
    scorer block) and ignores cfg keys it does not know (threshold, overwrite)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("test_echo_linker")
    gold = list(read_jsonl(fixtures_dir / "readers" / "el.jsonl", nlp))
    examples = [Example(nlp.make_doc(d.text), d) for d in gold]
    scores = nlp.evaluate(examples)
    # Paris TP; Merkel and Rome FN (France's optional NIL parent: nothing)
    assert (scores["el_tp"], scores["el_fp"], scores["el_fn"]) == (1, 0, 2)
    assert scores["el_micro_p"] == 1.0 and scores["el_micro_r"] == pytest.approx(1 / 3)
    weights = nlp.config["training"]["score_weights"]
    assert set(k for k in weights if k.startswith("el_")) <= set(scores)


def test_scorers_resolve_from_config():
    cfg = {"el": {"@scorers": "spacy_kbnlp.el_scorer.v1", "matching": "weak"},
           "coref": {"@scorers": "spacy_kbnlp.coref_scorer.v1", "drop_singletons": True},
           "re": {"@scorers": "spacy_kbnlp.rel_scorer.v1", "negative_labels": ["Other"],
                  "semeval": True}}
    resolved = spacy.util.registry.resolve(cfg)
    assert all(callable(f) for f in resolved.values())


def test_nlp_evaluate_coref_and_rel_scorers(nlp):
    """Scorers called directly with Examples as nlp.evaluate would pass them."""
    coref = spacy.registry.scorers.get("spacy_kbnlp.coref_scorer.v1")()
    rel = spacy.registry.scorers.get("spacy_kbnlp.rel_scorer.v1")()
    gold = nlp.make_doc("Anna said she left Boston .")
    set_coref_clusters(gold, [[(0, 1), (2, 3)]])
    gold.ents = [Span(gold, 0, 1, "Peop"), Span(gold, 4, 5, "Loc")]
    add_relation(gold, gold[0:1], gold[4:5], "Live_In")
    pred = gold_coref(nlp.make_doc(gold.text))
    pred.ents = [Span(pred, 0, 1, "Peop"), Span(pred, 4, 5, "Loc")]
    add_relation(pred, pred[4:5], pred[0:1], "Live_In")   # reversed
    eg = Example(pred, gold)
    assert coref([eg])["coref_conll_f"] == 1.0
    out = rel([eg])
    assert (out["rel_tp"], out["rel_fp"], out["rel_fn"], out["rel_ner_f"]) == (0, 1, 1, 1.0)
