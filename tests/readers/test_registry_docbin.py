import pytest
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import make_tempdir, registry

import spacy_kbnlp  # noqa: F401  (registers the readers)
from spacy_kbnlp.extensions import get_coref_clusters
from spacy_kbnlp.readers import FORMATS, read_conll04, read_docs
from spacy_kbnlp.readers.spans import GoldCorpus

pytestmark = pytest.mark.filterwarnings("ignore:.*KBW05")


def test_formats():
    assert set(FORMATS) == {"elevant", "conll2012", "gum_tsv", "conll04", "semeval2010", "jsonl",
                            "spacy"}


def test_unknown_format(nlp):
    with pytest.raises(ValueError, match="KBE050.*'xml'"):
        read_docs("x", "xml", nlp)


def _paths(shared_data, fixtures_dir):
    return {
        "spacy_kbnlp.ElevantCorpus.v1": (
            shared_data / "el" / "elevant" / "benchmarks" / "oke-2016-eval.benchmark.jsonl", {}),
        "spacy_kbnlp.CorefConllCorpus.v1": (
            fixtures_dir / "readers" / "ontonotes_sample.v4_gold_conll", {"drop_singletons": True}),
        "spacy_kbnlp.GumTsvCorpus.v1": (
            shared_data / "coref" / "gum" / "gum" / "tsv" / "GUM_bio_byron.tsv", {}),
        "spacy_kbnlp.Conll04Corpus.v1": (
            shared_data / "re" / "conll04" / "spert_format" / "conll04_dev.json", {}),
        "spacy_kbnlp.SemEval2010Corpus.v1": (
            fixtures_dir / "readers" / "semeval_sample.semeval.txt", {}),
        "spacy_kbnlp.JsonlCorpus.v1": (fixtures_dir / "readers" / "re.jsonl", {"task": "re"}),
    }


@pytest.mark.parametrize("name", [
    "spacy_kbnlp.ElevantCorpus.v1", "spacy_kbnlp.CorefConllCorpus.v1",
    "spacy_kbnlp.GumTsvCorpus.v1", "spacy_kbnlp.Conll04Corpus.v1",
    "spacy_kbnlp.SemEval2010Corpus.v1", "spacy_kbnlp.JsonlCorpus.v1"])
def test_registered_readers_yield_examples(nlp, shared_data, fixtures_dir, name):
    path, opts = _paths(shared_data, fixtures_dir)[name]
    corpus = registry.readers.get(name)(path=str(path), limit=2, **opts)
    examples = list(corpus(nlp))
    assert 1 <= len(examples) <= 2
    for eg in examples:
        assert isinstance(eg, Example)
        assert [t.text for t in eg.predicted] == [t.text for t in eg.reference]
        assert eg.predicted.text == eg.reference.text
        assert not eg.predicted.ents and not eg.predicted.spans
    ref = examples[0].reference
    assert ref._.source is not None
    assert ref.ents or get_coref_clusters(ref)


def test_registered_reader_from_config(nlp, fixtures_dir):
    from thinc.api import Config

    cfg = Config().from_str(f"""
[corpora]
[corpora.dev]
@readers = "spacy_kbnlp.JsonlCorpus.v1"
path = "{fixtures_dir / 'readers' / 'coref.jsonl'}"
task = "coref"
limit = 0
""")
    corpora = registry.resolve(cfg)["corpora"]
    egs = list(corpora["dev"](nlp))
    assert len(egs) == 2
    assert len(get_coref_clusters(egs[1].reference)) == 2


def test_shuffle_and_limit(nlp, shared_data):
    path = shared_data / "re" / "conll04" / "spert_format" / "conll04_dev.json"
    plain = [eg.reference.text for eg in GoldCorpus(read_conll04, path)(nlp)]
    shuffled = [eg.reference.text
                for eg in GoldCorpus(read_conll04, path, shuffle=True, seed=1)(nlp)]
    assert len(plain) == 231 and sorted(plain) == sorted(shuffled) and plain != shuffled
    assert len(list(GoldCorpus(read_conll04, path, limit=5)(nlp))) == 5


def _docbin_round_trip(nlp, docs):
    with make_tempdir() as tmp:
        db = DocBin(store_user_data=True, docs=docs)
        db.to_disk(tmp / "x.spacy")
        return list(read_docs(tmp / "x.spacy", "spacy", nlp))


def test_docbin_round_trip_el(nlp, shared_data):
    path = shared_data / "el" / "elevant" / "benchmarks" / "wiki-fair-v2-test.benchmark.jsonl"
    docs = list(read_docs(path, "elevant", nlp, limit=3))
    back = _docbin_round_trip(nlp, docs)
    for a, b in zip(docs, back):
        assert b.text == a.text
        # lists come back as tuples after msgpack: compare as JSON-like values
        assert [dict(r, children=list(r["children"])) for r in b._.el_gold] == a._.el_gold
        assert list(b._.el_eval_span) == a._.el_eval_span
        assert b._.source["id"] == a._.source["id"]
        assert [list(x) for x in b._.source["title_synonyms"]] == a._.source["title_synonyms"]
        assert [(e.start, e.end, e.kb_id_) for e in b.ents] == [(e.start, e.end, e.kb_id_) for e in a.ents]
        assert [(s.start, s.end, s.label_, s.kb_id_) for s in b.spans["el_gold"]] == \
            [(s.start, s.end, s.label_, s.kb_id_) for s in a.spans["el_gold"]]


def test_docbin_round_trip_relations_and_clusters(nlp, shared_data):
    rel = list(read_docs(shared_data / "re" / "conll04" / "spert_format" / "conll04_dev.json",
                         "conll04", nlp, limit=3))
    coref = list(read_docs(shared_data / "coref" / "gum" / "gum" / "tsv" / "GUM_bio_byron.tsv",
                           "gum_tsv", nlp))
    back = _docbin_round_trip(nlp, rel + coref)
    for a, b in zip(rel + coref, back):
        assert b._.kb_rels == a._.kb_rels
        assert [[(s.start, s.end) for s in c] for c in b._.coref_clusters] == \
            [[(s.start, s.end) for s in c] for c in a._.coref_clusters]
        if a.has_annotation("SENT_START"):
            assert [s.start for s in b.sents] == [s.start for s in a.sents]
    assert len(back[-1]._.coref_clusters) > 50 and back[-1]._.rel_records
