"""``score``: a prediction file against a gold file in the same format."""
import json

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.util import make_tempdir
from typer.testing import CliRunner

from spacy_kbnlp.cli import app
from spacy_kbnlp.cli.score import pair_docs, score
from spacy_kbnlp.readers import read_jsonl

RUNNER = CliRunner()

EL_PRED = [  # el.jsonl with Paris dropped, "capital" added, Rome mislinked
    {"id": "a", "text": "Paris is the capital of France.",
     "mentions": [{"start": 13, "end": 20, "kb_id": "Q5119"},
                  {"start": 24, "end": 30, "kb_id": "Q142"}]},
    {"id": "b", "text": "Angela Merkel visited Rome in 2019.",
     "mentions": [{"start": 0, "end": 13, "kb_id": "Q567"},
                  {"start": 22, "end": 26, "kb_id": "Q2"}]},
]


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf8")
    return path


def test_score_el_identity_and_perturbed(fixtures_dir):
    gold = fixtures_dir / "readers" / "el.jsonl"
    same = score("el", gold, gold, "jsonl", quiet=True)
    # every mention of the file is a prediction: the NIL "the capital of France" label
    # answers itself (its child France is then not scored), DATETIME answers DATETIME
    assert (same["el_tp"], same["el_fp"], same["el_fn"]) == (3, 0, 0)
    assert same["el_micro_f"] == 1.0 and same["el_macro_f"] == 1.0
    with make_tempdir() as tmp:
        pred = _write_jsonl(tmp / "pred.jsonl", list(reversed(EL_PRED)))  # paired by id
        out = score("el", gold, pred, "jsonl", output=tmp / "m.json", quiet=True)
        assert json.loads((tmp / "m.json").read_text()) == pytest.approx(out)
    # a: Paris FN, capital FP (no gold span), France TP for its optional NIL parent;
    # b: Merkel TP, Rome FN + FP -> tp 2, fp 2, fn 2
    assert (out["el_tp"], out["el_fp"], out["el_fn"]) == (2, 2, 2)
    assert out["el_micro_f"] == pytest.approx(0.5) and out["el_macro_f"] == pytest.approx(0.5)


def test_score_el_cli_and_docbin(fixtures_dir):
    """A DocBin of pipeline output (doc.ents with kb_id_) against a DocBin of gold."""
    nlp = spacy.blank("en")
    gold = list(read_jsonl(fixtures_dir / "readers" / "el.jsonl", nlp))
    pred = []
    for doc in gold:
        p = nlp.make_doc(doc.text)
        p.ents = [p.char_span(0, 5, "E", kb_id="Q90")] if doc.text.startswith("Paris") else \
            [p.char_span(0, 13, "E", kb_id="Q567"), p.char_span(22, 26, "E", kb_id="Q220")]
        p._.source = dict(doc._.source)
        pred.append(p)
    with make_tempdir() as tmp:
        DocBin(docs=gold, store_user_data=True).to_disk(tmp / "gold.spacy")
        DocBin(docs=pred, store_user_data=True).to_disk(tmp / "pred.spacy")
        result = RUNNER.invoke(app, ["score", "el", str(tmp / "gold.spacy"),
                                     str(tmp / "pred.spacy"), "-f", "spacy", "-o",
                                     str(tmp / "m.json")])
        assert result.exit_code == 0, result.output
        metrics = json.loads((tmp / "m.json").read_text())
    assert (metrics["el_tp"], metrics["el_fp"], metrics["el_fn"]) == (3, 0, 0)
    assert "el_micro" in result.output


def test_score_coref_gum_identity_and_perturbed(fixtures_dir, shared_data):
    gum = shared_data / "coref" / "gum" / "gum" / "conll" / "GUM_academic_art.conll"
    out = score("coref", gum, gum, "conll2012", quiet=True)
    assert all(out[f"coref_{m}_f"] == 1.0 for m in ("muc", "b3", "ceafe", "lea", "conll"))
    gold = fixtures_dir / "readers" / "coref.jsonl"
    with make_tempdir() as tmp:
        pred = _write_jsonl(tmp / "pred.jsonl", [
            {"id": "c1", "tokens": ["Anna", "said", "she", "would", "come", "."],
             "clusters": [[[0, 1], [2, 3]]]},
            {"id": "c2", "tokens": ["The", "dog", "barked", ".", "It", "was", "loud", ".",
                                    "Anna", "heard", "it", "."],
             "clusters": [[[1, 2], [4, 5], [10, 11]], [[8, 9]]]}])
        result = RUNNER.invoke(app, ["score", "coref", str(gold), str(pred), "-f", "jsonl",
                                     "-o", str(tmp / "m.json")])
        assert result.exit_code == 0, result.output
        out = json.loads((tmp / "m.json").read_text())
    # as in test_evaluate_cli: MUC 2/3, B3 13/18, CEAFe 8/9, LEA 2/3
    assert out["coref_muc_f"] == pytest.approx(2 / 3)
    assert out["coref_b3_f"] == pytest.approx(13 / 18)
    assert out["coref_ceafe_f"] == pytest.approx(8 / 9)
    assert out["coref_lea_f"] == pytest.approx(2 / 3)
    assert "coref_conll" in result.output


def test_score_re_identity_and_perturbed(fixtures_dir, shared_data):
    dev = shared_data / "re" / "conll04" / "spert_format" / "conll04_dev.json"
    out = score("re", dev, dev, "conll04", quiet=True)
    assert out["rel_strict_f"] == 1.0 and out["rel_tp"] > 0 and out["rel_docs"] == 231
    gold = fixtures_dir / "readers" / "re.jsonl"
    with make_tempdir() as tmp:
        pred = _write_jsonl(tmp / "pred.jsonl", [
            {"id": "r1", "text": "Bill Gates founded Microsoft.",
             "entities": [{"start": 0, "end": 10, "label": "Peop"},
                          {"start": 19, "end": 28, "label": "Org"}],
             "relations": [{"head": 0, "tail": 1, "label": "Work_For"}]},
            {"id": "r2", "text": "John lives in Boston, near Cambridge.",
             "entities": [{"start": 0, "end": 4, "label": "Peop"},
                          {"start": 14, "end": 20, "label": "Org"},
                          {"start": 27, "end": 36, "label": "Loc"}],
             "relations": [{"head": 0, "tail": 1, "label": "Live_In"},
                           {"head": 0, "tail": 2, "label": "Other"}]}])
        out = score("re", gold, pred, "jsonl", quiet=True)
    # micro: Work_For, Live_In TP; Located_In FN. strict: Boston typed Org -> Live_In wrong
    assert (out["rel_tp"], out["rel_fp"], out["rel_fn"]) == (2, 0, 1)
    assert out["rel_strict_p"] == pytest.approx(1 / 2) and out["rel_strict_r"] == pytest.approx(1 / 3)


def test_pairing_errors(fixtures_dir):
    gold = fixtures_dir / "readers" / "el.jsonl"
    with make_tempdir() as tmp:
        pred = _write_jsonl(tmp / "pred.jsonl", EL_PRED[:1])
        result = RUNNER.invoke(app, ["score", "el", str(gold), str(pred), "-f", "jsonl"])
        assert result.exit_code == 1 and "KBE104" in result.output and "'b'" in result.output
        pred = _write_jsonl(tmp / "pred2.jsonl", [dict(EL_PRED[0], id="x"), EL_PRED[1]])
        with pytest.raises(ValueError, match="KBE104"):
            score("el", gold, pred, "jsonl", quiet=True)
        # by order, the ids do not matter
        out = score("el", gold, pred, "jsonl", quiet=True, pair_by="order")
        assert out["el_tp"] == 2
        result = RUNNER.invoke(app, ["score", "el", str(gold), str(tmp / "pred2.jsonl"), "-f",
                                     "conll2012"])
        assert result.exit_code == 1 and "[KBE060]" in result.output   # a coded reader error
    nlp = spacy.blank("en")
    docs = list(read_jsonl(gold, nlp))
    for d in docs:
        d._.source = {"id": "same"}
    with pytest.raises(ValueError, match="KBE105"):
        pair_docs(docs, docs, "id")
    assert pair_docs(docs, list(reversed(docs)))[0] == (docs[0], docs[1])   # auto -> order
