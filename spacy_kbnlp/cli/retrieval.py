"""``python -m spacy_kbnlp build-demo-store`` and ``train-ruie``."""
from pathlib import Path
from typing import Any, Dict, Optional, Union

from wasabi import msg

from ._util import Arg, Opt, app, setup_gpu


def _read(path: Path, fmt: str, lang: str, limit: int = 0):
    import spacy

    from ..readers import read_docs

    nlp = spacy.blank(lang)
    return nlp, list(read_docs(path, fmt, nlp, limit=limit))


def build_demo_store(input_path: Path, output_path: Path, *, fmt: str = "spacy", task: str = "re",
                     input_format: str = "marked", encoder: Optional[str] = None, dense: bool = True,
                     preset: str = "flat", lang: str = "en", limit: int = 0,
                     fraction: float = 1.0, seed: int = 0,
                     show_progress: bool = True) -> Dict[str, Any]:
    """Build a ``DemoStore`` from annotated docs (a ``.spacy`` file or any reader
    format, e.g. the project JSONL) and write it to ``output_path``; ``fraction`` /
    ``seed``: the nested seeded subset of the docs that training with the same values
    uses (``readers.select.fraction_subset``)."""
    from ..encoders.hf import HFEncoder
    from ..readers.select import check_fraction, fraction_subset
    from ..retrieval.store import DemoStore

    check_fraction(fraction)  # a bad fraction fails before the docs are read
    _, docs = _read(input_path, fmt, lang, limit)
    docs = fraction_subset(docs, fraction, seed)
    enc = HFEncoder(encoder) if dense else None
    store = DemoStore.from_docs(docs, task=task, input_format=input_format, encoder=enc,
                                preset=preset, show_progress=show_progress)
    store.to_disk(output_path)
    return {"count": len(store), "dense": store.index is not None, "encoder": store.encoder_name}


# fmt: off
@app.command("build-demo-store")
def build_demo_store_cli(
    input_path: Path = Arg(..., help="Annotated docs: .spacy file/folder or a reader format (see --format)", exists=True),
    output_path: Path = Arg(..., help="Output folder of the store"),
    fmt: str = Opt("spacy", "--format", "-f", help="Reader format: spacy, jsonl, conll04, semeval2010, ..."),
    task: str = Opt("re", "--task", help="Target format: re (relations) or ner (entities)"),
    input_format: str = Opt("marked", "--input-format", help="marked (entities marked) or text"),
    encoder: Optional[str] = Opt(None, "--encoder", "-e", help="Encoder path (default: bundled MiniLM; a RUIE-trained encoder dir)"),
    no_dense: bool = Opt(False, "--no-dense", help="BM25 only: no embeddings"),
    preset: str = Opt("flat", "--preset", help="FAISS preset of the dense index"),
    lang: str = Opt("en", "--lang", help="Language of the blank pipeline used to read"),
    limit: int = Opt(0, "--limit", help="Read at most this many docs (0 = all)"),
    fraction: float = Opt(1.0, "--fraction", help="Keep this share of the docs: the nested seeded subset training uses (configs/etrag.cfg vars.fraction, benchmarks/re.py)"),
    seed: int = Opt(0, "--seed", help="Seed of the --fraction subset"),
):
    # fmt: on
    """Build a demonstration store (texts, targets, BM25, FAISS index) for demo_retriever."""
    try:
        info = build_demo_store(input_path, output_path, fmt=fmt, task=task, input_format=input_format,
                                encoder=encoder, dense=not no_dense, preset=preset, lang=lang, limit=limit,
                                fraction=fraction, seed=seed)
    except (ValueError, FileNotFoundError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Wrote {info['count']} demonstrations to {output_path}"
             + (f" (dense: {info['encoder']})" if info["dense"] else " (BM25 only)"))


def train_ruie_cmd(train_path: Path, output_path: Path, *, fmt: str = "spacy",
                   preference: str = "etrag", model: Optional[str] = None, lang: str = "en",
                   limit: int = 0, weight: float = 0.1, **kwargs: Any) -> Dict[str, Any]:
    """Train the RUIE retriever on annotated docs; ``preference`` is ``llm`` (``model``
    = a local HF causal/seq2seq directory), ``etrag`` (``model`` = a pipeline
    directory holding a trained ``etrag_relation_extractor``), ``label`` (the gold
    labels of the training docs; no model) or ``mixed`` (``label`` + ``weight`` x the
    standardised ``etrag`` preference)."""
    from ..errors import Errors
    from ..retrieval.ruie import PREFERENCES, LabelPreference, MixedPreference, train_ruie
    from ..retrieval.store import DemoStore

    if preference not in PREFERENCES:
        raise ValueError(Errors.KBE315.format(value=preference, options=", ".join(PREFERENCES)))
    if model is None and preference != "label":
        raise ValueError(Errors.KBE312.format(value=None, setting="--model",
                                              why="give the LLM directory or the ETRAG pipeline"))
    _, docs = _read(train_path, fmt, lang)
    store = DemoStore.from_docs(docs)
    queries = docs[:limit] if limit else docs
    if preference == "label":
        pref: Any = LabelPreference()
    elif preference == "llm":
        from ..llm.backends import HFLocalBackend
        from ..retrieval.ruie import LLMPreference

        labels = sorted({r["label"] for d in docs for r in d._.rel_records or ()})
        pref = LLMPreference(HFLocalBackend(model), labels)
    else:
        pref = etrag_preference(model)
        if preference == "mixed":
            pref = MixedPreference(pref, weight=weight)
    return train_ruie(store, queries, pref, output_path, **kwargs)


def etrag_preference(model: Union[str, Path]):
    """``RelationModelPreference`` of the ``etrag_relation_extractor`` in the
    pipeline directory ``model``."""
    import spacy

    from ..retrieval.ruie import RelationModelPreference

    nlp = spacy.load(model)
    pipe = next(p for _, p in nlp.pipeline if p.__class__.__name__ == "EtragRelationExtractor")
    return RelationModelPreference(pipe)


# fmt: off
@app.command("train-ruie")
def train_ruie_cli(
    train_path: Path = Arg(..., help="Annotated training docs (the demonstration pool and the queries)", exists=True),
    output_path: Path = Arg(..., help="Output folder: encoder/ (bi-encoder) and ruie_meta.json"),
    fmt: str = Opt("spacy", "--format", "-f", help="Reader format of TRAIN_PATH"),
    preference: str = Opt("etrag", "--preference", "-p", help="llm (RUIE's LLM log-likelihood), etrag (our relation model), label (the gold labels of the training docs) or mixed (label + weight x etrag)"),
    model: Optional[str] = Opt(None, "--model", "-m", help="LLM directory (llm) or pipeline with a trained etrag_relation_extractor (etrag, mixed)"),
    weight: float = Opt(0.1, "--weight", help="mixed: weight of the standardised model preference next to the label preference"),
    limit: int = Opt(0, "--limit", help="Use the first N docs as queries (0 = all)"),
    n_candidates: int = Opt(16, "--candidates", help="BM25 candidates per query"),
    reward_steps: int = Opt(200, "--reward-steps", help="Reward-model optimizer steps (0 = no reward model, no KL term)"),
    bi_steps: int = Opt(200, "--bi-steps", help="Bi-encoder optimizer steps"),
    batch_size: int = Opt(8, "--batch-size", help="Queries per step"),
    negatives: str = Opt("least", "--negatives", help="Each query's negatives: least (the least preferred candidates) or closest (the most preferred below the positive; label: the opposite direction first)"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
):
    # fmt: on
    """Train the RUIE demonstration retriever (reward model + distilled bi-encoder)."""
    setup_gpu(gpu_id)
    try:
        meta = train_ruie_cmd(train_path, output_path, fmt=fmt, preference=preference, model=model,
                              limit=limit, weight=weight, n_candidates=n_candidates, reward_steps=reward_steps,
                              bi_steps=bi_steps, batch_size=batch_size, negatives=negatives, show_progress=True,
                              log=msg.text)
    except (ValueError, FileNotFoundError, ImportError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"RUIE retriever written to {output_path}/encoder (preference: {meta['preference']})")
