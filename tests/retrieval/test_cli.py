from typer.testing import CliRunner

from spacy.tokens import DocBin

from spacy_kbnlp.cli import app
from spacy_kbnlp.retrieval.store import DemoStore

from .util import re_docs


def test_build_demo_store_cli(nlp, tmp_path):
    DocBin(store_user_data=True, docs=re_docs(nlp)).to_disk(tmp_path / "train.spacy")
    runner = CliRunner()
    res = runner.invoke(app, ["build-demo-store", str(tmp_path / "train.spacy"), str(tmp_path / "store"),
                              "--no-dense"])
    assert res.exit_code == 0, res.output
    store = DemoStore.from_disk(tmp_path / "store")
    assert len(store) == 8 and store.index is None
    assert store.records[5]["target"] == "Booth | Kill | Lincoln"
    bad = runner.invoke(app, ["build-demo-store", str(tmp_path / "train.spacy"), str(tmp_path / "s2"),
                              "--task", "coref", "--no-dense"])
    assert bad.exit_code == 1 and "KBE301" in bad.output
    ruie = runner.invoke(app, ["train-ruie", str(tmp_path / "train.spacy"), str(tmp_path / "r"),
                               "--preference", "gpt"])
    assert ruie.exit_code == 1 and "KBE315" in ruie.output
    mixed = runner.invoke(app, ["train-ruie", str(tmp_path / "train.spacy"), str(tmp_path / "r"),
                                "--preference", "mixed"])  # mixed needs the ETRAG pipeline
    assert mixed.exit_code == 1 and "KBE312" in mixed.output and "--model" in mixed.output
    negs = runner.invoke(app, ["train-ruie", str(tmp_path / "train.spacy"), str(tmp_path / "r"),
                               "--preference", "label", "--negatives", "hardest"])
    assert negs.exit_code == 1 and "KBE326" in negs.output and "closest" in negs.output


def test_build_demo_store_fraction_is_the_training_subset(nlp, tmp_path):
    """--fraction/--seed keep the same nested seeded subset as training
    (readers.select.fraction_subset, the SubsetCorpus reader of configs/etrag.cfg)."""
    from spacy_kbnlp.readers.select import fraction_subset

    docs = re_docs(nlp)
    DocBin(store_user_data=True, docs=docs).to_disk(tmp_path / "train.spacy")
    runner = CliRunner()
    res = runner.invoke(app, ["build-demo-store", str(tmp_path / "train.spacy"), str(tmp_path / "store"),
                              "--no-dense", "--fraction", "0.5", "--seed", "3"])
    assert res.exit_code == 0, res.output
    store = DemoStore.from_disk(tmp_path / "store")
    want = [d.text for d in fraction_subset(docs, 0.5, 3)]
    assert len(want) == 4 and [r["text"] for r in store.records] == want
    assert want != [d.text for d in fraction_subset(docs, 0.5, 0)]  # the seed matters
    bad = runner.invoke(app, ["build-demo-store", str(tmp_path / "train.spacy"), str(tmp_path / "s2"),
                              "--no-dense", "--fraction", "1.5"])
    assert bad.exit_code == 1 and "KBE320" in bad.output
