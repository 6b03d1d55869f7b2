import re
from collections import Counter

import pytest
from spacy.util import make_tempdir

from spacy_kbnlp.readers.semeval2010 import read_semeval2010

RELATIONS = ("Other", "Cause-Effect", "Component-Whole", "Entity-Destination", "Product-Producer",
             "Entity-Origin", "Member-Collection", "Message-Topic", "Content-Container",
             "Instrument-Agency")
GLUED = (213, 2740, 4612, 4784, 6373, 8411, 9867)


def sem(shared_data, which):
    base = shared_data / "re" / "semeval2010_task8"
    return base / ("training/TRAIN_FILE.TXT" if which == "train" else "testing_keys/TEST_FILE_FULL.TXT")


@pytest.fixture(scope="module")
def sem_docs(shared_data):
    from spacy.lang.en import English

    nlp = English()
    return {w: list(read_semeval2010(sem(shared_data, w), nlp)) for w in ("train", "test")}


def test_counts_match_readme(sem_docs):
    train, test = sem_docs["train"], sem_docs["test"]
    assert len(train) == 8000 and len(test) == 2717
    assert [d._.source["id"] for d in train] == list(range(1, 8001))
    assert [d._.source["id"] for d in test] == list(range(8001, 10718))
    tc = Counter(d._.rel_records[0]["label"] for d in train)
    assert tuple(tc[r] for r in RELATIONS) == (1410, 1003, 941, 845, 717, 716, 690, 634, 540, 504)
    sc = Counter(d._.rel_records[0]["label"] for d in test)
    assert tuple(sc[r] for r in RELATIONS) == (454, 328, 312, 292, 231, 258, 233, 261, 192, 156)


def _raw_blocks(path):
    text = path.read_text(encoding="latin-1").replace("\r\n", "\n").strip()
    for block in text.split("\n\n"):
        first, label = block.split("\n")[:2]
        sid, sent = first.split("\t")
        yield int(sid), sent[1:-1], label


@pytest.mark.parametrize("which", ["train", "test"])
def test_text_nominals_and_direction_exact(shared_data, sem_docs, which):
    """Independent parse: the tag-free text, both nominal strings, and the directed label."""
    tag = re.compile(r"</?e[12]>")
    for (sid, sent, label), doc in zip(_raw_blocks(sem(shared_data, which)), sem_docs[which]):
        assert doc._.source["id"] == sid
        assert doc.text == tag.sub("", sent)
        e1 = re.search(r"<e1>(.*?)</e1>", sent).group(1)
        e2 = re.search(r"<e2>(.*?)</e2>", sent).group(1)
        assert [(e.text, e.label_) for e in doc.ents] == [(e1, "NOMINAL"), (e2, "NOMINAL")]
        (rec,) = doc._.rel_records
        head, tail = doc[rec["head"][0]:rec["head"][1]].text, doc[rec["tail"][0]:rec["tail"][1]].text
        if label == "Other":
            assert (rec["label"], head, tail) == ("Other", e1, e2)
        else:
            rel, args = label[:-7], label[-7:]
            assert args in ("(e1,e2)", "(e2,e1)")
            assert rec["label"] == rel
            assert (head, tail) == ((e1, e2) if args == "(e1,e2)" else (e2, e1))
        assert doc._.source["label"] == label


def test_glued_tags(sem_docs):
    docs = {d._.source["id"]: d for w in ("train", "test") for d in sem_docs[w]}
    expected = {213: ("duel", "moles"), 2740: ("staff", "shop"), 4612: ("cortex", "neurons"),
                4784: ("coil", "relay"), 6373: ("claw", "bird"), 8411: ("particle", "bath"),
                9867: ("pressure", "caisson")}
    for sid in GLUED:
        doc = docs[sid]
        assert tuple(e.text for e in doc.ents) == expected[sid]
    assert docs[2740].text.startswith("Thestaff in the shop")
    assert [t.text for t in docs[2740][:2]] == ["The", "staff"]
    assert docs[6373]._.kb_rels == {(docs[6373].ents[0].start, docs[6373].ents[1].start):
                                {"Component-Whole": 1.0}}


def test_component_whole_e2_e1(sem_docs):
    doc = sem_docs["train"][0]
    assert doc._.source["label"] == "Component-Whole(e2,e1)"
    assert doc._.source["comment"] == "Not a collection: there is structure here, organisation."
    assert [(h.text, t.text, lab) for h, t, lab, _ in doc._.relations] == [
        ("elements", "configuration", "Component-Whole")]


def test_fixture_crlf_and_comment_tags(nlp, fixtures_dir):
    docs = list(read_semeval2010(fixtures_dir / "readers" / "semeval_sample.semeval.txt", nlp))
    assert len(docs) == 3
    assert docs[0].text == "Thestaff of the shop left."
    assert [e.text for e in docs[1].ents] == ["big red apple", "basket"]
    assert docs[2]._.source["comment"] == "a <e1>tag</e1> in a comment"
    assert [r["label"] for d in docs for r in d._.rel_records] == [
        "Member-Collection", "Entity-Destination", "Other"]


@pytest.mark.parametrize("block,match", [
    ('5\t"No tags here."\nOther\nComment:\n', r"KBE063.*x\.txt:5.*tags"),
    ('5\t"A <e1>b</e1> c <e2>d</e2>."\nCause-Effect(e3,e1)\nComment:\n', r"KBE063.*x\.txt:6.*label"),
    ('5 "A <e1>b</e1> c <e2>d</e2>."\nOther\nComment:\n', r"KBE063.*x\.txt:5.*first line"),
])
def test_malformed_block_names_file_and_line(nlp, block, match):
    good = '4\t"A <e1>b</e1> c <e2>d</e2>."\nOther\nComment:\n\n'
    with make_tempdir() as tmp:
        path = tmp / "x.txt"
        path.write_text(good + block, encoding="latin-1")
        with pytest.raises(ValueError, match=match):
            list(read_semeval2010(path, nlp))
