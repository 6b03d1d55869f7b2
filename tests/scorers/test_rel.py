"""Relation metrics: SemEval-2010 Task 8 official score on hand-computed cases
(following semeval2010_task8_scorer-v1.2.pl), micro and strict scores on Docs."""
import pytest
import spacy
from spacy.tokens import Span
from spacy.training import Example

from spacy_kbnlp.extensions import add_relation
from spacy_kbnlp.readers import read_jsonl, read_semeval2010
from spacy_kbnlp.scorers.rel import (doc_relations, make_rel_scorer, score_relation_docs,
                                     semeval2010_official, undirected)

GOLD = {1: "Cause-Effect(e1,e2)", 2: "Cause-Effect(e2,e1)", 3: "Component-Whole(e1,e2)",
        4: "Component-Whole(e1,e2)", 5: "Other", 6: "Other", 7: "Message-Topic(e1,e2)",
        8: "Cause-Effect(e1,e2)"}
PRED = {1: "Cause-Effect(e1,e2)",        # correct
        2: "Cause-Effect(e1,e2)",        # right relation, wrong direction (xDIRx)
        3: "Component-Whole(e1,e2)",     # correct
        4: "Other",                      # missed
        5: "Component-Whole(e2,e1)",     # Other predicted as Component-Whole
        6: "Other",                      # correct Other (never scored)
        # 7 skipped
        8: "Message-Topic(e1,e2)"}       # wrong relation


def test_semeval_official_hand_computed():
    """Cause-Effect: correct 1, proposed 1 + 1 wrong direction, gold 3:
    P = 1/2, R = 1/3, F = 0.4. Component-Whole: correct 1 of 2 proposed (ids 3, 5),
    gold 2: P = R = F = 1/2. Message-Topic: 0 of 1 proposed, gold 1: 0.
    Official macro F1 = (0.4 + 0.5 + 0) / 3 = 0.3; macro P = 1/3, R = 5/18.
    Micro (Other excluded): P = 2/5, R = 2/6."""
    out = semeval2010_official(GOLD, PRED)
    assert out["f"] == pytest.approx(0.3)
    assert out["p"] == pytest.approx(1 / 3)
    assert out["r"] == pytest.approx(5 / 18)
    assert out["micro_p"] == pytest.approx(0.4)
    assert out["micro_r"] == pytest.approx(1 / 3)
    assert out["micro_f"] == pytest.approx(2 * 0.4 * (1 / 3) / (0.4 + 1 / 3))
    ce = out["per_relation"]["Cause-Effect"]
    assert (ce["correct"], ce["proposed"], ce["wrong_direction"], ce["gold"]) == (1, 1, 1, 3)
    assert ce["f"] == pytest.approx(0.4)
    assert "Other" in out["per_relation"]   # reported, not averaged


def test_semeval_official_edge_cases():
    # only wrong-direction predictions: the scorer's P is 0 (no proposal of the type)
    out = semeval2010_official({1: "Cause-Effect(e1,e2)"}, {1: "Cause-Effect(e2,e1)"})
    assert (out["p"], out["r"], out["f"]) == (0.0, 0.0, 0.0)
    # a predicted type absent from the key lowers no relation's precision
    out = semeval2010_official({1: "Cause-Effect(e1,e2)", 2: "Other"},
                               {1: "Cause-Effect(e1,e2)", 2: "Entity-Origin(e1,e2)"})
    assert out["f"] == 1.0
    # macro over the types present in the key: 2 types, one perfect
    out = semeval2010_official({1: "Cause-Effect(e1,e2)", 2: "Product-Producer(e2,e1)"},
                               {1: "Cause-Effect(e1,e2)"})
    assert out["f"] == pytest.approx(0.5) and out["micro_r"] == pytest.approx(0.5)
    assert semeval2010_official(GOLD, GOLD)["f"] == 1.0
    assert undirected("Member-Collection(e2,e1)") == "Member-Collection"
    with pytest.raises(ValueError, match="KBE110"):
        semeval2010_official({1: "Other"}, {2: "Other"})


def _copy(doc, nlp):
    pred = nlp.make_doc(doc.text)
    pred.ents = [Span(pred, e.start, e.end, label=e.label_) for e in doc.ents]
    return pred


def test_semeval_from_docs(fixtures_dir, nlp):
    gold = list(read_semeval2010(fixtures_dir / "readers" / "semeval_sample.semeval.txt", nlp))
    preds = []
    for doc in gold:
        pred = _copy(doc, nlp)
        e1, e2 = sorted(pred.ents, key=lambda e: e.start)
        label = doc._.source["label"]
        if label == "Other":
            add_relation(pred, e1, e2, "Other", 0.9)
        elif label.endswith("(e1,e2)"):     # predict the reverse direction
            add_relation(pred, e2, e1, undirected(label), 0.8)
        else:
            add_relation(pred, e2, e1, undirected(label), 0.8)   # correct (e2,e1)
            add_relation(pred, e1, e2, "Cause-Effect", 0.1)      # lower score: ignored
        preds.append(pred)
    expected_gold = {i: d._.source["label"] for i, d in enumerate(gold)}
    expected_pred = {}
    for i, d in enumerate(gold):
        label = d._.source["label"]
        expected_pred[i] = (label if label == "Other" or label.endswith("(e2,e1)")
                            else undirected(label) + "(e2,e1)")
    out = score_relation_docs(zip(gold, preds), semeval=True)
    official = semeval2010_official(expected_gold, expected_pred)
    assert out["rel_semeval_f"] == pytest.approx(official["f"])
    assert 0.0 < out["rel_semeval_f"] < 1.0
    assert score_relation_docs(zip(gold, gold), semeval=True)["rel_semeval_f"] == 1.0


def test_micro_strict_and_ner_hand_computed(fixtures_dir, nlp):
    gold = list(read_jsonl(fixtures_dir / "readers" / "re.jsonl", nlp))
    # r1 "Bill Gates founded Microsoft.": Work_For right, but Microsoft typed Loc
    p1 = nlp.make_doc(gold[0].text)
    p1.ents = [Span(p1, 0, 2, label="Peop"), Span(p1, 3, 4, label="Loc")]
    add_relation(p1, p1[0:2], p1[3:4], "Work_For", 0.9)
    # r2 "John lives in Boston, near Cambridge.": Live_In right (score 0.3), Located_In
    # reversed, and an Other (negative) record that is never counted
    p2 = _copy(gold[1], nlp)
    john, boston, cambridge = p2.ents
    add_relation(p2, john, boston, "Live_In", 0.3)
    add_relation(p2, john, boston, "Located_In", 0.2)
    add_relation(p2, cambridge, boston, "Located_In", 0.7)
    add_relation(p2, john, cambridge, "Other", 0.99)
    pairs = [(gold[0], p1), (gold[1], p2)]
    out = score_relation_docs(pairs, top_label_only=True, per_label=True)
    # micro: TP Work_For, Live_In; FP Located_In(Cambridge, Boston); FN Located_In(Boston, Cambridge)
    assert (out["rel_tp"], out["rel_fp"], out["rel_fn"]) == (2, 1, 1)
    assert out["rel_micro_p"] == pytest.approx(2 / 3) and out["rel_micro_r"] == pytest.approx(2 / 3)
    # strict: Work_For's tail type is wrong -> 1 TP, 2 FP, 2 FN
    assert out["rel_strict_p"] == pytest.approx(1 / 3) and out["rel_strict_r"] == pytest.approx(1 / 3)
    # ents: 4 of 5 right, Microsoft/Loc is a FP and Microsoft/Org a FN
    assert out["rel_ner_p"] == pytest.approx(0.8) and out["rel_ner_r"] == pytest.approx(0.8)
    assert out["rel_per_label"]["Located_In"] == {"p": 0.0, "r": 0.0, "f": 0.0, "tp": 0,
                                                  "fp": 1, "fn": 1}
    # every label of the pair counts without top_label_only: Located_In(John, Boston) FP
    assert score_relation_docs(pairs)["rel_fp"] == 2
    # threshold 0.5 drops Live_In (0.3)
    out = score_relation_docs(pairs, threshold=0.5)
    assert (out["rel_tp"], out["rel_fp"], out["rel_fn"]) == (1, 1, 2)
    assert score_relation_docs(zip(gold, gold))["rel_strict_f"] == 1.0


def test_registered_scorer(fixtures_dir, nlp):
    gold = list(read_jsonl(fixtures_dir / "readers" / "re.jsonl", nlp))
    preds = [_copy(doc, nlp) for doc in gold]
    add_relation(preds[0], preds[0].ents[0], preds[0].ents[1], "Work_For", 0.6)
    examples = [Example(p, g) for g, p in zip(gold, preds)]
    scorer = spacy.registry.scorers.get("spacy_kbnlp.rel_scorer.v1")()
    out = scorer(examples, labels=["Work_For"], model_name="x")   # cfg keys are ignored
    assert (out["rel_tp"], out["rel_fp"], out["rel_fn"]) == (1, 0, 2)
    assert scorer(examples, threshold=0.7)["rel_tp"] == 0   # cfg threshold overrides
    assert not any(k.startswith("rel_semeval") for k in out)
    assert doc_relations(gold[1]) == {((0, 1), (3, 4), "Live_In"), ((3, 4), (6, 7), "Located_In")}
    assert make_rel_scorer(negative_labels=["Work_For"])(examples)["rel_tp"] == 0
