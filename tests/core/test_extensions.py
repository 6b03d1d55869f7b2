import pytest
from spacy.tokens import Doc, DocBin

from spacy_kbnlp.extensions import (
    add_relation,
    get_coref_clusters,
    install_extensions,
    matches_coref_prefix,
    set_coref_clusters,
)


def test_install_is_idempotent():
    install_extensions()
    install_extensions()
    assert Doc.has_extension("rel_records")


def test_clash_with_foreign_extension_raises():
    Doc.set_extension("source", default="other package", force=True)
    try:
        with pytest.raises(ValueError, match="KBE154"):
            install_extensions()
    finally:
        Doc.remove_extension("source")
        install_extensions()


def test_prefix_matcher():
    assert matches_coref_prefix("coref_clusters", "coref_clusters_1")
    assert matches_coref_prefix("coref_clusters", "coref_clusters_12")
    assert not matches_coref_prefix("coref_clusters", "coref_clusters_")
    assert not matches_coref_prefix("coref_clusters", "coref_clusters_x")
    assert not matches_coref_prefix("coref_clusters", "other_1")


def test_relations_and_clusters_survive_docbin(nlp):
    doc = nlp("Ada Lovelace worked with Charles Babbage in London .")
    add_relation(doc, doc[0:2], doc[7:8], "Live_In")
    add_relation(doc, doc[0:2], doc[4:6], "Knows", 0.25)
    set_coref_clusters(doc, [[(0, 2), (4, 6)], [(7, 8)]])
    assert doc._.kb_rels == {(0, 7): {"Live_In": 1.0}, (0, 4): {"Knows": 0.25}}
    db = DocBin(store_user_data=True, docs=[doc])
    doc2 = list(DocBin().from_bytes(db.to_bytes()).get_docs(nlp.vocab))[0]
    assert doc2._.kb_rels == doc._.kb_rels
    rels = doc2._.relations
    assert [(h.text, t.text, lab, s) for h, t, lab, s in rels] == [
        ("Ada Lovelace", "London", "Live_In", 1.0),
        ("Ada Lovelace", "Charles Babbage", "Knows", 0.25),
    ]
    assert [[s.text for s in c] for c in doc2._.coref_clusters] == [["Ada Lovelace", "Charles Babbage"], ["London"]]
    # writing again replaces the old clusters
    set_coref_clusters(doc2, [[(7, 8), (0, 2)]])
    assert [[s.text for s in c] for c in get_coref_clusters(doc2)] == [["London", "Ada Lovelace"]]
    assert sorted(doc2.spans) == ["coref_clusters_1"]
