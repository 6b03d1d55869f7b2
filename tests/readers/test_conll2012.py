import warnings

import pytest
from spacy.util import make_tempdir

from spacy_kbnlp.extensions import get_coref_clusters
from spacy_kbnlp.readers.conll2012 import parse_coref_column, read_conll2012


def clusters_text(doc):
    return [[s.text for s in c] for c in get_coref_clusters(doc)]


def test_twelve_column_fixture(nlp, fixtures_dir):
    path = fixtures_dir / "readers" / "ontonotes_sample.v4_gold_conll"
    docs = list(read_conll2012(path, nlp))
    assert [d._.source["id"] for d in docs] == [
        "bc/sample/00/sample_0001_0", "bc/sample/00/sample_0001_1", "nw/sample/00/sample_0002_0"]
    doc = docs[0]
    assert doc.text == "John said he liked his dog . It barked at New York ."
    # blank line between the sentences -> sentence starts
    assert [s.text for s in doc.sents] == ["John said he liked his dog .", "It barked at New York ."]
    # "(1|(0)" on "his": two brackets separated by "|"; singletons kept; ordered by first mention
    assert clusters_text(doc) == [["John", "he", "his"], ["his dog", "It"], ["New York"]]
    assert doc._.source["cluster_labels"] == ["0", "1", "2"]
    assert doc._.source["part"] == "000"
    assert clusters_text(docs[1]) == [["Mary"]]
    # third document: no sentence breaks at all -> sentence boundaries left unset
    assert clusters_text(docs[2]) == [["The company", "it"]]
    assert not docs[2].has_annotation("SENT_START")


def test_drop_singletons(nlp, fixtures_dir):
    path = fixtures_dir / "readers" / "ontonotes_sample.v4_gold_conll"
    docs = list(read_conll2012(path, nlp, drop_singletons=True))
    assert clusters_text(docs[0]) == [["John", "he", "his"], ["his dog", "It"]]
    assert clusters_text(docs[1]) == []
    assert docs[0]._.source["cluster_labels"] == ["0", "1"]


@pytest.mark.parametrize("col,expected", [
    ("(abstract-1(person-3-Lord_Byron)", [("open", "abstract-1"), ("one", "person-3-Lord_Byron")]),
    ("abstract-1)organization-4)", [("close", "abstract-1"), ("close", "organization-4")]),
    ("(1|(0)|2)", [("open", "1"), ("one", "0"), ("close", "2")]),
    ("_", []), ("-", []),
])
def test_parse_coref_column(col, expected):
    assert parse_coref_column(col, "f:1") == expected


def test_gum_conll_byron(shared_data, nlp):
    path = shared_data / "coref" / "gum" / "gum" / "conll" / "GUM_bio_byron.conll"
    doc = next(read_conll2012(path, nlp))
    assert doc._.source["id"] == "GUM_bio_byron"
    labels = doc._.source["cluster_labels"]
    byron = get_coref_clusters(doc)[labels.index("person-3-Lord_Byron")]
    # rows 4, 6, 42 of the file: "Byron", "his", "he"
    assert [s.text for s in byron[:3]] == ["Byron", "his", "he"]
    assert [(s.start, s.end) for s in byron[:3]] == [(4, 5), (6, 7), (42, 43)]
    assert clusters_text(doc)[0] == ["Education", "his early formal education at Aberdeen "
                                     "Grammar School"]
    # no sentence breaks in the 3-column files
    assert not doc.has_annotation("SENT_START")


def test_gum_conll_sentences_from_tsv(shared_data, nlp):
    path = shared_data / "coref" / "gum" / "gum" / "conll" / "GUM_bio_byron.conll"
    doc = next(read_conll2012(path, nlp, sentences_from="auto"))
    sents = list(doc.sents)
    assert sents[0].text == "Education and early loves"
    assert sents[1].text.startswith("Byron received his early formal education")
    tsv = shared_data / "coref" / "gum" / "gum" / "tsv" / "GUM_bio_byron.tsv"
    n_text_lines = sum(line.startswith("#Text=") for line in open(tsv, encoding="utf-8"))
    assert len(sents) == n_text_lines


def test_ontogum_empty_name_and_empty_token(shared_data, nlp):
    folder = shared_data / "coref" / "gum" / "ontogum" / "conll"
    path = folder / "GUM_news_iodine.conll"
    assert "# begin document \n" in open(path, encoding="utf-8").read()
    with pytest.warns(UserWarning, match=r"KBW052.*GUM_news_iodine\.conll:381"):
        doc = next(read_conll2012(path, nlp))
    assert doc._.source["id"] == "GUM_news_iodine"
    assert doc[379].text == "_"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc2 = next(read_conll2012(path, nlp, sentences_from="auto"))
    # the token from the GUM tsv (same tokens)
    assert doc2[379].text == "|"
    assert doc2.has_annotation("SENT_START")
    assert clusters_text(doc) == clusters_text(doc2)


def test_ontogum_totals(shared_data, nlp):
    """README: OntoGUM 23,320 + 3,818 + 3,581 mentions, 5,311 + 857 + 858 chains."""
    folder = shared_data / "coref" / "gum" / "ontogum" / "conll"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        docs = list(read_conll2012(folder, nlp))
    assert len(docs) == 237
    assert len({d._.source["id"] for d in docs}) == 237
    clusters = [c for d in docs for c in get_coref_clusters(d)]
    assert len(clusters) == 5311 + 857 + 858
    assert sum(len(c) for c in clusters) == 23320 + 3818 + 3581
    # README: 10 singleton chains are kept
    assert sum(len(c) == 1 for c in clusters) == 10


BAD_CASES = [
    ("0\tA\t(1\n1\tb\t_\n", r"KBE060.*bad\.conll:2.*never closed"),
    ("0\tA\t1)\n", r"KBE060.*bad\.conll:2.*never opened"),
    ("0\tA\t(1)x\n", r"KBE060.*bad\.conll:2"),
    ("0\tA B\n", r"KBE061.*bad\.conll:2"),
]


@pytest.mark.parametrize("body,match", BAD_CASES)
def test_malformed_names_file_and_line(nlp, body, match):
    with make_tempdir() as tmp:
        path = tmp / "bad.conll"
        path.write_text("# begin document x\n" + body + "# end document\n", encoding="utf-8")
        with pytest.raises(ValueError, match=match):
            list(read_conll2012(path, nlp))


def test_missing_path(nlp):
    with pytest.raises(ValueError, match="KBE052"):
        list(read_conll2012("/nonexistent/x.conll", nlp))
    with make_tempdir() as tmp:
        with pytest.raises(ValueError, match="KBE051"):
            list(read_conll2012(tmp, nlp))
