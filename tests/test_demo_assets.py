"""The shipped demo assets are consistent (ids, offsets, labels): runs assets/demo/validate_demo.py."""
import importlib.util
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


def test_demo_assets_validate(capsys):
    spec = importlib.util.spec_from_file_location("validate_demo", DEMO / "validate_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main() == 0, capsys.readouterr().out


def test_demo_coref_gold_reads_onto_tokens():
    """The hand-made coreference clusters of the demo text read through the project's
    JSONL reader onto spaCy tokens, every mention kept, and the demo scores a doc
    with exactly those clusters as perfect."""
    import spacy

    from spacy_kbnlp.cli.demo import _demo_coref_gold, report_coref_scores

    gold = _demo_coref_gold(DEMO)
    clusters = [[m.text for m in c] for c in gold._.coref_clusters]
    assert len(clusters) == 11 and sum(map(len, clusters)) == 35
    assert ["Alan Turing", "He", "he", "his", "he", "his"] in clusters
    assert ["Tim Berners-Lee", "he"] in clusters
    pred = spacy.blank("en")(gold.text)
    from spacy_kbnlp.extensions import set_coref_clusters

    set_coref_clusters(pred, [[(m.start, m.end) for m in c] for c in gold._.coref_clusters])
    scores = report_coref_scores(pred, gold, printer=lambda *a, **k: None)
    assert scores["conll_f"] == 1.0 and scores["lea_f"] == 1.0 and scores["mention_r"] == 1.0
