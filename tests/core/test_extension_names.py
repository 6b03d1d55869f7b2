"""Our Doc/Span extension names do not clash with spacy-llm's task fields.

spacy-llm's REL task registers ``Doc.set_extension("rel", default=[])`` (when no
``rel`` extension exists) and assigns ``doc._.rel = [RelationItem(dep, dest,
relation), ...]``; its other built-in tasks write ``llm_reply``, ``sentiment``,
``summary`` and ``translation``. spacy_kbnlp's relation view is ``doc._.kb_rels``.
"""
import subprocess
import sys

from spacy.tokens import Doc, DocBin

from spacy_kbnlp.extensions import DOC_EXTENSIONS, add_relation, install_extensions

SPACY_LLM_FIELDS = ("rel", "llm_reply", "sentiment", "summary", "translation")


def test_no_spacy_llm_field_is_ours():
    assert not set(SPACY_LLM_FIELDS) & set(DOC_EXTENSIONS)
    assert "kb_rels" in DOC_EXTENSIONS


def test_spacy_llm_rel_registered_first_then_import():
    """A fresh interpreter: spacy-llm's call first, then ``import spacy_kbnlp``;
    both ``doc._.rel`` (assigned as spacy-llm does) and ``doc._.kb_rels`` work and
    survive a DocBin round trip."""
    code = """
from spacy.lang.en import English
from spacy.tokens import Doc, DocBin
Doc.set_extension("rel", default=[])
import spacy_kbnlp
from spacy_kbnlp.extensions import add_relation, install_extensions
install_extensions()
nlp = English()
doc = nlp("Ada Lovelace lived in London .")
add_relation(doc, doc[0:2], doc[4:5], "Live_In", 0.5)
doc._.rel = [{"dep": 0, "dest": 1, "relation": "LivesIn"}]
out = list(DocBin(store_user_data=True, docs=[doc]).get_docs(nlp.vocab))[0]
print(Doc.get_extension("rel"), list(out._.rel), out._.kb_rels)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == (
        "([], None, None, None) [{'dep': 0, 'dest': 1, 'relation': 'LivesIn'}] "
        "{(0, 4): {'Live_In': 0.5}}")


def test_spacy_llm_rel_registered_after_ours(nlp):
    """spacy-llm's ``_check_extension("rel")`` after our import: it registers its
    own extension (none is there) and re-installing ours is still fine."""
    assert not Doc.has_extension("rel")
    Doc.set_extension("rel", default=[])
    try:
        install_extensions()
        doc = nlp("Marie Curie worked in Paris .")
        add_relation(doc, doc[0:2], doc[4:5], "Work_For")
        doc._.rel = [{"dep": 0, "dest": 1, "relation": "WorksIn"}]
        assert doc._.rel == [{"dep": 0, "dest": 1, "relation": "WorksIn"}]
        assert doc._.kb_rels == {(0, 4): {"Work_For": 1.0}}
        assert [(h.text, t.text, lab) for h, t, lab, _ in doc._.relations] == [
            ("Marie Curie", "Paris", "Work_For")]
        back = list(DocBin(store_user_data=True, docs=[doc]).get_docs(nlp.vocab))[0]
        assert list(back._.rel) == doc._.rel and back._.kb_rels == doc._.kb_rels
    finally:
        Doc.remove_extension("rel")
