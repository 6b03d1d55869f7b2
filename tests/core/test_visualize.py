"""spacy_kbnlp.render: the displaCy HTML of links, nested mentions, coreference
clusters and relations on a small hand-annotated doc."""
import re
import warnings

import pytest
from spacy.lang.en import English
from spacy.tokens import Doc, Span

import spacy_kbnlp
from spacy_kbnlp.extensions import add_relation, set_coref_clusters
from spacy_kbnlp.visualize import cluster_label, kb_url, span_data

LABEL = re.compile(r'white-space: nowrap">\s*([^<]*?)\s*(?:<a [^>]*href="([^"]*)">([^<]*)</a>)?\s*</span>')
ARC = re.compile(r'class="displacy-label"[^>]*>([^<]*)</textPath>')
WORD = re.compile(r'class="displacy-word"[^>]*>([^<]*)</tspan>\s*<tspan class="displacy-tag"[^>]*>([^<]*)</tspan>')


def link(start, end, kb_id, label, score):
    return {"start": start, "end": end, "kb_id": kb_id, "label": label, "score": score,
            "candidates": [[kb_id, score]], "key": "entqa_linker"}


@pytest.fixture
def doc():
    nlp = English()
    doc = nlp("Marie Curie worked at the University of Paris . She was born in Warsaw .")
    # "Paris" (7) is linked inside the linked "University of Paris" (5-8): a nested mention
    doc._.kb_links = [link(0, 2, "Q7186", "PERSON", 0.9), link(5, 8, "Q209842", "ORG", 0.8),
                      link(7, 8, "Q90", "GPE", 0.7), link(13, 14, "Q270", "GPE", 0.95)]
    set_coref_clusters(doc, [[(0, 2), (9, 10)], [(4, 8)]])
    add_relation(doc, doc[0:2], doc[5:8], "Work_For", 0.91)
    add_relation(doc, doc[9:10], doc[13:14], "Born_In", 0.8)
    return doc


def test_render_links_nested_clusters_relations(doc):
    html = spacy_kbnlp.render(doc)
    assert html.lstrip().startswith("<!DOCTYPE html>")
    labels = LABEL.findall(html)
    wd = "https://www.wikidata.org/wiki/"
    assert labels == [
        ("PERSON", wd + "Q7186", "Q7186"), ("cluster 1: Marie Curie", "", ""),
        ("cluster 2: the University of Paris", "", ""), ("ORG", wd + "Q209842", "Q209842"),
        ("GPE", wd + "Q90", "Q90"), ("cluster 1: Marie Curie", "", ""),
        ("GPE", wd + "Q270", "Q270")]
    assert all(label for label, _, _ in labels)
    # one arc per relation, arguments merged into one word tagged with their link
    assert ARC.findall(html) == ["Work_For 0.91", "Born_In 0.80"]
    words = WORD.findall(html)
    assert words == [("Marie Curie", "PERSON Q7186"), ("worked at the", ""),
                     ("University of Paris", "ORG Q209842"),
                     ("She", ""), ("was born in", ""), ("Warsaw", "GPE Q270")]
    assert '<meta charset="utf-8">' in html
    # and a table row per relation
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    cells = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
             for r in rows[1:]]
    assert cells == [["Marie Curie Q7186", "Work_For", "University of Paris Q209842", "0.91"],
                     ["She", "Born_In", "Warsaw Q270", "0.80"]]
    assert re.findall(r'href="([^"]*)"', rows[1]) == [wd + "Q7186", wd + "Q209842"]


def test_nested_mentions_stack(doc):
    data, colors = span_data(doc, ["links", "coref"], "auto")
    on_paris = [(s["label"], s["kb_id"]) for s in data["spans"]
                if s["start_token"] <= 7 < s["end_token"]]
    assert sorted(on_paris) == [("GPE", "Q90"), ("ORG", "Q209842"),
                                ("cluster 2: the University of Paris", "")]
    assert colors == {"CLUSTER 1: MARIE CURIE": "#c5a3ff",
                      "CLUSTER 2: THE UNIVERSITY OF PARIS": "#9fd8f0"}
    # the token "Paris" carries three stacked bars in the HTML
    html = spacy_kbnlp.render(doc, styles=["links", "coref"], page=False)
    paris = re.search(r"height: (\d+)px;\">\s*Paris(.*?)</span>\s*</span>\s*(?=\.)", html, re.S)
    assert paris is not None and paris.group(1) == str(40 + 20 + 17 * 2)


def test_styles_and_templates(doc):
    html = spacy_kbnlp.render(doc, styles="links", kb_url_template="https://example.org/e/{kb_id}",
                              page=False)
    assert not html.lstrip().startswith("<!DOCTYPE")
    assert [(lab, url) for lab, url, _ in LABEL.findall(html)] == [
        ("PERSON", "https://example.org/e/Q7186"), ("ORG", "https://example.org/e/Q209842"),
        ("GPE", "https://example.org/e/Q90"), ("GPE", "https://example.org/e/Q270")]
    assert "cluster" not in html and "displacy-label" not in html
    html = spacy_kbnlp.render(doc, styles=["coref"], page=False)
    assert [lab for lab, _, _ in LABEL.findall(html)] == [
        "cluster 1: Marie Curie", "cluster 2: the University of Paris", "cluster 1: Marie Curie"]
    # ids are URL-quoted; "auto" links QIDs only; None links nothing
    assert kb_url("Marie Curie/x", "https://en.wikipedia.org/wiki/{}") == \
        "https://en.wikipedia.org/wiki/Marie%20Curie%2Fx"
    assert kb_url("paris_france", "auto") == "#" and kb_url("Q90", "auto").endswith("/Q90")
    assert kb_url("Q90", None) == "#"


def test_cluster_label_prefers_a_name_and_escapes_html():
    nlp = English()
    doc = Doc(nlp.vocab, words="She said <b>Ada</b> was there and she left .".split())
    set_coref_clusters(doc, [[(0, 1), (2, 3), (6, 7)]])
    assert cluster_label(1, doc._.coref_clusters[0]) == "cluster 1: <b>Ada</b>"
    html = spacy_kbnlp.render(doc, page=False)
    assert [lab for lab, _, _ in LABEL.findall(html)] == ["cluster 1: &lt;b&gt;Ada&lt;/b&gt;"] * 3
    long = nlp("the very long name of a mountain range in the far north . It")
    set_coref_clusters(long, [[(0, 12), (13, 14)]])
    assert cluster_label(2, long._.coref_clusters[0]) == "cluster 2: the very long name of a mou..."


def test_ents_with_and_without_links():
    nlp = English()
    doc = nlp("Ada Lovelace met Babbage in London .")
    doc.ents = [Span(doc, 0, 2, label="PERSON", kb_id="Q7259"), Span(doc, 3, 4, label="PERSON"),
                Span(doc, 5, 6, label="GPE")]
    html = spacy_kbnlp.render(doc, page=False)
    assert LABEL.findall(html) == [("PERSON", "https://www.wikidata.org/wiki/Q7259", "Q7259"),
                                   ("PERSON", "", ""), ("GPE", "", "")]
    # a linker's record for London wins over the entity with the same boundaries
    doc._.kb_links = [link(5, 6, "Q84", "GPE", 0.5)]
    html = spacy_kbnlp.render(doc, page=False)
    assert LABEL.findall(html) == [("PERSON", "https://www.wikidata.org/wiki/Q7259", "Q7259"),
                                   ("PERSON", "", ""), ("GPE", "https://www.wikidata.org/wiki/Q84", "Q84")]


def test_bad_input_gives_coded_errors(doc):
    blank = English()("Nothing is annotated here .")
    with pytest.raises(ValueError, match=r"KBE180.*no links, coref, relations"):
        spacy_kbnlp.render(blank)
    with pytest.raises(ValueError, match=r"KBE181.*'arcs'.*links, coref, relations"):
        spacy_kbnlp.render(doc, styles=["links", "arcs"])
    with pytest.raises(ValueError, match="KBE181"):
        spacy_kbnlp.render(doc, styles=[])
    with pytest.raises(ValueError, match=r"KBE182.*\{wikidata_id\}"):
        spacy_kbnlp.render(doc, kb_url_template="https://www.wikidata.org/wiki/{wikidata_id}")
    with pytest.raises(TypeError, match="KBE183.*str"):
        spacy_kbnlp.render("Marie Curie")
    with pytest.raises(TypeError, match="KBE183.*Span"):
        spacy_kbnlp.render(doc[0:2])
    with pytest.raises(TypeError, match="KBE183.*nothing"):
        spacy_kbnlp.render([])
    with pytest.raises(TypeError, match="KBE183.*int"):
        spacy_kbnlp.render(5)
    # a requested style that one doc lacks is left out with a warning
    with pytest.warns(UserWarning, match=r"KBW180.*doc 1 has no coref"):
        html = spacy_kbnlp.render([doc, blank], styles=["coref"])
    assert html.count("<figure") == 1
    with pytest.raises(ValueError, match="KBE180"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spacy_kbnlp.render(blank, styles=["relations"])


def test_relation_arcs_point_from_head_to_tail():
    from spacy_kbnlp.visualize import relation_arcs

    nlp = English()
    doc = nlp("In Warsaw , a city that many poets and painters loved , lived Marie Curie .")
    add_relation(doc, doc[13:15], doc[1:2], "Live_In", 0.5)
    add_relation(doc, doc[13:15], doc[14:15], "Part", 0.25)  # nested in its head: table only
    data = relation_arcs(doc, 1, 15, doc._.rel_records)
    assert data["words"] == [{"text": "Warsaw", "tag": ""},
                             {"text": ", a city t...ed , lived", "tag": ""},
                             {"text": "Marie Curie", "tag": ""}]
    # the tail comes first: the arrow points left, to it
    assert data["arcs"] == [{"start": 0, "end": 2, "label": "Live_In 0.50", "dir": "left"}]
    html = spacy_kbnlp.render(doc, page=False)
    assert ARC.findall(html) == ["Live_In 0.50"]
    assert "<td" in html and "Part" in html
