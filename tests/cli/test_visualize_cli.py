"""``python -m spacy_kbnlp visualize``: a saved pipeline's mentions to HTML, coded
errors for bad input; the demo stack (slow)."""
import re

import pytest
from spacy.lang.en import English
from spacy.util import make_tempdir
from typer.testing import CliRunner

import spacy_kbnlp  # noqa: F401
from spacy_kbnlp.cli import app

RUNNER = CliRunner()
LABEL = re.compile(r'white-space: nowrap">\s*([^<]*?)\s*(?:<a [^>]*href="([^"]*)">([^<]*)</a>)?\s*</span>')


@pytest.fixture(scope="module")
def ruler_pipeline():
    nlp = English()
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": "Marie Curie"},
                        {"label": "GPE", "pattern": "Warsaw"}])
    with make_tempdir() as tmp:
        nlp.to_disk(tmp / "pipe")
        yield tmp / "pipe"


def test_visualize_writes_the_page(ruler_pipeline):
    with make_tempdir() as tmp:
        out = tmp / "sub" / "out.html"
        res = RUNNER.invoke(app, ["visualize", str(ruler_pipeline),
                                  "Marie Curie was born in Warsaw .", "-o", str(out)])
        assert res.exit_code == 0, res.output
        html = out.read_text(encoding="utf-8")
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert LABEL.findall(html) == [("PERSON", "", ""), ("GPE", "", "")]


def test_visualize_reads_stdin(ruler_pipeline):
    with make_tempdir() as tmp:
        res = RUNNER.invoke(app, ["visualize", str(ruler_pipeline), "-", "-o", str(tmp / "o.html"),
                                  "--style", "links"], input="Warsaw is far .")
        assert res.exit_code == 0, res.output
        assert LABEL.findall((tmp / "o.html").read_text(encoding="utf-8")) == [("GPE", "", "")]


@pytest.mark.parametrize("args,code", [
    (["no/such/pipeline", "text"], "KBE184"),
    (["PIPE", "Nobody is named here ."], "KBE180"),
    (["PIPE", "Warsaw .", "--style", "arcs"], "KBE181"),
    (["PIPE", "Warsaw .", "--kb-url", "https://x.org/{id}"], "KBE182"),
])
def test_visualize_bad_input_is_a_clear_error(ruler_pipeline, args, code):
    args = [str(ruler_pipeline) if a == "PIPE" else a for a in args]
    with make_tempdir() as tmp:
        res = RUNNER.invoke(app, ["visualize", *args, "-o", str(tmp / "o.html")])
        assert res.exit_code == 1
        assert code in res.output and "Traceback" not in res.output
        assert not (tmp / "o.html").exists()


def test_visualize_not_a_pipeline_folder():
    with make_tempdir() as tmp:
        res = RUNNER.invoke(app, ["visualize", str(tmp), "text", "-o", str(tmp / "o.html")])
    assert res.exit_code == 1 and "KBE184" in res.output and "meta.json" in res.output


@pytest.mark.slow
def test_visualize_demo_stack(encoder):
    from spacy_kbnlp.cli.visualize import build_demo_annotator

    annotate = build_demo_annotator(encoder=encoder)
    doc = annotate("Alan Turing was born in London and worked at Bletchley Park. He later joined "
                   "the University of Manchester, where his computer ran the first chess program.")
    links = {(doc[r["start"]:r["end"]].text, r["kb_id"]) for r in doc._.kb_links}
    assert links == {("Alan Turing", "alan_turing"), ("London", "london"),
                     ("Bletchley Park", "bletchley_park"),
                     ("University of Manchester", "university_of_manchester")}
    assert [[m.text for m in c] for c in doc._.coref_clusters] == [["He", "his"]]
    assert ("Alan Turing", "London", "Live_In") in [(h.text, t.text, lab) for h, t, lab, _ in doc._.relations]
    html = spacy_kbnlp.render(doc)
    assert "cluster 1: He" in html and ">alan_turing</a>" in html
