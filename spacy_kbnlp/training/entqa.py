"""EntQA training data: passages with their gold entities from gold EL Docs, the
training-only KB extension, and the held-out split for tuning and calibration.

Gold Docs come from the ELEVANT reader (``doc._.el_gold`` records with token
offsets, ``doc._.el_eval_span``). Only the evaluation span is annotated in the
Fair benchmarks, so passages are windows over the tokens inside it. A label is a
training target when it has a QID, is neither optional nor descriptive (nor
DATETIME/QUANTITY, nor a coreference mention unless ``include_coref``), could be
aligned to tokens and lies inside the evaluation span; nested labels (parents and
children) are all targets.
"""
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Container, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy
from spacy.tokens import Doc

from ..models.passages import Passage, doc_pieces, make_passages
from ..readers.elevant import QID_RE, is_optional
from ..scorers.el import DATETIME_QUANTITY, NIL, UNLINKED_IDS, normalize_gold_id
from ..readers.select import doc_id


@dataclass
class TrainPassage:
    """A passage and its gold entities: ``golds[kb_id]`` = word spans
    ``(start, end)`` relative to the passage (end exclusive)."""

    passage: Passage
    golds: Dict[str, List[Tuple[int, int]]] = field(default_factory=dict)
    # every QID labelled anywhere in the passage (targets or not): never a negative
    labelled: Set[str] = field(default_factory=set)


def eval_token_range(doc: Doc) -> Tuple[int, int]:
    """Tokens ``[start, end)`` lying inside ``doc._.el_eval_span`` (all tokens without one)."""
    span = doc._.el_eval_span
    if not span:
        return 0, len(doc)
    a, b = int(span[0]), int(span[1])
    start = next((t.i for t in doc if t.idx >= a), len(doc))
    end = start
    for t in doc[start:]:
        if t.idx + len(t.text) > b:
            break
        end = t.i + 1
    return start, end


def gold_links(doc: Doc, kb_ids: Optional[Container[str]] = None,
               include_coref: bool = False) -> List[Tuple[int, int, str]]:
    """Training targets ``(start_token, end_token, qid)`` of a gold EL Doc."""
    lo, hi = eval_token_range(doc)
    out = []
    for rec in doc._.el_gold or ():
        qid = rec.get("entity_id") or ""
        # known: in the given KB (any id scheme), else a Wikidata QID
        if normalize_gold_id(qid, kb_ids) in (NIL,) + DATETIME_QUANTITY or is_optional(rec):
            continue
        if rec.get("coref") and not include_coref:
            continue
        if rec.get("start") is None or rec.get("end") is None:
            continue
        s, e = int(rec["start"]), int(rec["end"])
        if lo <= s and e <= hi:
            out.append((s, e, qid))
    return sorted(set(out))


def labelled_ids(doc: Doc) -> List[Tuple[int, int, str]]:
    """Every linked label with a token span (optional and coreference ones too): a
    QID or another id (any KB's scheme), never NIL/unknown or a date/quantity."""
    return [(int(r["start"]), int(r["end"]), r["entity_id"]) for r in doc._.el_gold or ()
            if r.get("start") is not None
            and (r.get("entity_id") or "") not in UNLINKED_IDS + DATETIME_QUANTITY]


def training_passages(
    docs: Sequence[Doc],
    tokenizer,
    *,
    length: int = 32,
    stride: int = 16,
    topic: str = "first_line",
    topic_length: int = 12,
    kb_ids: Optional[Container[str]] = None,
    include_coref: bool = False,
) -> List[TrainPassage]:
    """Passages over the evaluation span of every doc, with gold entities fully
    inside each window. ``Passage.doc_index`` indexes ``docs``."""
    out: List[TrainPassage] = []
    for i, doc in enumerate(docs):
        dp = doc_pieces(tokenizer, doc, topic, topic_length)
        links = gold_links(doc, kb_ids, include_coref)
        labels = labelled_ids(doc)
        for p in make_passages(i, doc, dp, length, stride, eval_token_range(doc)):
            tp = TrainPassage(p)
            for s, e, qid in links:
                if p.start <= s and e <= p.end:
                    tp.golds.setdefault(qid, []).append((s - p.start, e - p.start))
            tp.labelled = {q for s, e, q in labels if s < p.end and e > p.start}
            tp.labelled.update(tp.golds)
            out.append(tp)
    return out


def extend_records(records: Sequence[Any], docs: Iterable[Doc],
                   make_record: Optional[Callable[..., Any]] = None) -> Tuple[List[Any], int]:
    """The KB records plus one name-only record per gold QID of ``docs`` that is not
    in the KB (training only: the protocol allows the gold name, no description).
    Labels named "Unknown" are skipped. Returns (records, number added)."""
    if make_record is None:
        from ..kb.records import EntityRecord as make_record
    known = {r.id for r in records}
    added: Dict[str, str] = {}
    for doc in docs:
        for rec in doc._.el_gold or ():
            qid = rec.get("entity_id") or ""
            name = (rec.get("name") or "").strip()
            if not QID_RE.match(qid) or qid in known or qid in added:
                continue
            if not name or name == "Unknown":
                continue
            added[qid] = name
    extra = [make_record(id=q, name=n) for q, n in sorted(added.items())]
    return list(records) + extra, len(extra)


def split_holdout(docs: Sequence[Doc], every: int = 5, offset: int = 0) -> Tuple[List[Doc], List[Doc]]:
    """Deterministic split of training docs: in each source file, sorted by id,
    every ``every``-th doc (starting at ``offset``) goes to the held-out set."""
    by_file: Dict[str, List[Doc]] = {}
    for d in docs:
        by_file.setdefault(str((d._.source or {}).get("file", "")), []).append(d)
    train: List[Doc] = []
    dev: List[Doc] = []
    for key in sorted(by_file):
        group = sorted(by_file[key], key=lambda d: (len(doc_id(d)), doc_id(d)))
        for j, d in enumerate(group):
            (dev if every > 0 and j % every == offset % max(every, 1) else train).append(d)
    return train, dev


def batches(items: Sequence[Any], size: int, *, shuffle: bool = True,
            seed: int = 0) -> List[List[Any]]:
    """Items in batches of ``size`` (shuffled with ``seed``)."""
    order = list(range(len(items)))
    if shuffle:
        random.Random(seed).shuffle(order)
    return [[items[i] for i in order[b: b + size]] for b in range(0, len(order), size)]


# ---------------------------------------------------------------- training steps

@dataclass
class EntityTexts:
    """Piece ids of every training-KB entity: the full text (name + description)
    and the name alone. ``row_of[kb_id]`` = row."""

    ids: List[str]
    full: List[List[int]]
    name_only: List[List[int]]
    row_of: Dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if not self.row_of:
            self.row_of = {k: i for i, k in enumerate(self.ids)}

    def pieces(self, row: int, rng: Optional[random.Random] = None,
               desc_dropout: float = 0.0) -> List[int]:
        """Full text, or (with probability ``desc_dropout``) the name alone, so that a
        missing description (the training-only name records) is no cue."""
        if rng is not None and desc_dropout > 0 and rng.random() < desc_dropout:
            return self.name_only[row]
        return self.full[row]


def retriever_step_inputs(
    items: Sequence[Tuple[int, TrainPassage]],
    texts: EntityTexts,
    ranked: Callable[[int], Sequence[int]],
    *,
    n_negatives: int,
    hard_fraction: float,
    rng: numpy.random.Generator,
    text_rng: Optional[random.Random] = None,
    desc_dropout: float = 0.0,
):
    """Candidates of one retriever batch: per passage its gold rows plus sampled
    negatives that exclude every entity labelled in the passage.

    Returns (passages, entity piece lists of the union of candidates,
    cand_index (B, C) into that union with -1 padding, gold (B, C) bool)."""
    from .negatives import sample_negatives

    n_ent = len(texts.ids)
    per: List[List[int]] = []
    golds: List[Set[int]] = []
    for index, tp in items:
        gold = {texts.row_of[q] for q in tp.golds if q in texts.row_of}
        exclude = gold | {texts.row_of[q] for q in tp.labelled if q in texts.row_of}
        neg = sample_negatives(exclude, ranked(index), n_negatives, n_ent,
                               hard_fraction=hard_fraction, rng=rng)
        per.append(sorted(gold) + neg)
        golds.append(gold)
    union = sorted({r for rows in per for r in rows})
    pos = {r: i for i, r in enumerate(union)}
    width = max((len(rows) for rows in per), default=1)
    cand = numpy.full((len(per), width), -1, dtype="int64")
    gold_mask = numpy.zeros((len(per), width), dtype=bool)
    for b, rows in enumerate(per):
        for c, r in enumerate(rows):
            cand[b, c] = pos[r]
            gold_mask[b, c] = r in golds[b]
    pieces = [texts.pieces(r, text_rng, desc_dropout) for r in union]
    return [tp.passage for _, tp in items], pieces, cand, gold_mask


def reader_targets(tps: Sequence[TrainPassage], candidates: Sequence[Sequence[str]],
                   pairs: Sequence[Tuple[int, int]], width: int):
    """Gold start/end positions (pairs, width+1) and gold candidates (pairs,) for the
    reader loss: the word positions of every gold mention of the candidate (word i
    is position i+1), or position 0 ([CLS]) when the candidate is not mentioned."""
    gs = numpy.zeros((len(pairs), width + 1), dtype=bool)
    ge = numpy.zeros((len(pairs), width + 1), dtype=bool)
    gc = numpy.zeros(len(pairs), dtype=bool)
    for r, (p, c) in enumerate(pairs):
        spans = tps[p].golds.get(candidates[p][c], [])
        if not spans:
            gs[r, 0] = ge[r, 0] = True
            continue
        gc[r] = True
        for s, e in spans:
            gs[r, s + 1] = True
            ge[r, e] = True
    return gs, ge, gc


def reader_candidates(tp: TrainPassage, ranked_ids: Sequence[str], k: int,
                      rng: random.Random) -> List[str]:
    """Training candidates of a passage: all its gold entities plus the best-ranked
    retrieved entities that are not labelled in it, ``k`` in all, shuffled."""
    cands = list(tp.golds)
    for q in ranked_ids:
        if len(cands) >= max(k, len(tp.golds)):
            break
        if q not in tp.labelled and q not in cands:
            cands.append(q)
    rng.shuffle(cands)
    return cands


def retriever_batch_loss(model, items: Sequence[Tuple[int, TrainPassage]], texts: EntityTexts,
                         ranked: Callable[[int], Sequence[int]], *, n_negatives: int,
                         hard_fraction: float, rng: numpy.random.Generator,
                         text_rng: Optional[random.Random] = None, desc_dropout: float = 0.0):
    """Multi-label NCE (6.1) of one batch of training passages (``(index, passage)``
    pairs; ``ranked(index)`` = the miner's ranking for the hard negatives)."""
    import torch

    from ..models.passages import Batch, entity_input, passage_query, special_ids
    from ..models.retriever import multilabel_nce_loss

    passages, pieces, cand, gold = retriever_step_inputs(
        items, texts, ranked, n_negatives=n_negatives, hard_fraction=hard_fraction, rng=rng,
        text_rng=text_rng, desc_dropout=desc_dropout)
    cls, sep, pad = special_ids(model.tokenizer)
    device = next(model.parameters()).device
    pq = [passage_query(p, cls, sep, model.spec.max_passage_pieces) for p in passages]
    eq = [entity_input(p[: model.spec.max_entity_pieces], cls, sep) for p in pieces]
    pb = Batch.pad(pq, [[0] * len(s) for s in pq], pad).to_torch(device)
    eb = Batch.pad(eq, [[0] * len(s) for s in eq], pad).to_torch(device)
    cand_t = torch.from_numpy(cand).to(device)
    scores = model(pb, eb, cand_t)
    return multilabel_nce_loss(scores, torch.from_numpy(gold).to(device), cand_t >= 0)


def reader_batch_loss(reader, tps: Sequence[TrainPassage], candidates: Sequence[Sequence[str]],
                      pieces_of: Callable[[str], List[int]]):
    """Reader objective (6.2) of one batch: ``candidates[i]`` are entity ids for
    passage ``i`` (all its golds among them), ``pieces_of(id)`` their piece ids."""
    from ..models.reader import build_inputs, reader_loss

    inputs = build_inputs(reader.spec, reader.tokenizer, [tp.passage for tp in tps],
                          [[pieces_of(q) for q in c] for c in candidates])
    start, end, rank = reader(inputs)
    gs, ge, gc = reader_targets(tps, candidates, inputs.pairs, inputs.first.shape[1])
    return reader_loss(start, end, rank, inputs.pairs, len(tps), gs, ge, gc)


# ---------------------------------------------------------------- training drivers

def _section(config: Dict[str, Any], *keys: str) -> Dict[str, Any]:
    out: Any = config
    for k in keys:
        out = (out or {}).get(k) or {}
    return dict(out)


def resolve_specs(config: Dict[str, Any]):
    """The retriever and reader specs of ``[components.entqa_linker]``."""
    from spacy.util import registry

    comp = config["components"]["entqa_linker"]
    got = registry.resolve({"retriever": comp["retriever"], "reader": comp["reader"]})
    return got["retriever"], got["reader"]


def passage_settings(config: Dict[str, Any]) -> Dict[str, Any]:
    comp = config["components"]["entqa_linker"]
    return {"length": comp.get("passage_length", 32), "stride": comp.get("passage_stride", 16),
            "topic": comp.get("topic", "first_line"), "topic_length": comp.get("topic_length", 12)}


def read_corpus(path: Any, nlp) -> List[Doc]:
    """Gold Docs from a .spacy file or folder (``None``: no docs)."""
    if path is None or str(path) in ("", "None", "null"):
        return []
    from ..readers import read_docbin

    return list(read_docbin(path, nlp))


def freeze_embeddings(module) -> int:
    """Freeze the word embedding matrices (most of a small encoder's parameters,
    little to learn from a few thousand mentions); returns the frozen count."""
    n = 0
    for name, param in module.named_parameters():
        if "word_embeddings" in name:
            param.requires_grad_(False)
            n += param.numel()
    return n


def train_top_layers(module, n_layers: int) -> int:
    """Train only the top ``n_layers`` transformer layers of ``module.encoder`` (and
    every parameter outside the encoder: the heads); freeze the embeddings and the
    layers below. 0 keeps everything trainable. A reader trained so differs from
    its base encoder in a few MB, small enough to ship (``save_reader(delta=True)``).
    Returns the frozen parameter count."""
    if n_layers <= 0:
        return 0
    layers = _encoder_layers(module.encoder)
    keep = {id(p) for layer in layers[len(layers) - n_layers:] for p in layer.parameters()}
    n = 0
    for param in module.encoder.parameters():
        if id(param) not in keep:
            param.requires_grad_(False)
            n += param.numel()
    return n


def _encoder_layers(encoder) -> Sequence[Any]:
    """The transformer blocks of a HF encoder (BERT-like ``encoder.layer``,
    DistilBERT ``transformer.layer``, or the first ``ModuleList`` found)."""
    import torch

    for path in (("encoder", "layer"), ("transformer", "layer"), ("layers",)):
        obj = encoder
        for attr in path:
            obj = getattr(obj, attr, None)
        if isinstance(obj, torch.nn.ModuleList):
            return list(obj)
    for child in encoder.modules():
        if isinstance(child, torch.nn.ModuleList):
            return list(child)
    return []


def scale_head_lr(reader, scale: float) -> None:
    """Train the reader's heads (every child module but the encoder) at ``scale`` x
    the learning rate (``training.loop.make_optimizer`` reads ``lr_scales``). The
    span and rerank heads start from scratch on a pretrained encoder: at the
    encoder's rate they hardly move in a CPU-sized run and the [CLS] span keeps
    winning over the gold mention."""
    reader.lr_scales = {n: scale for n, _ in reader.named_children() if n != "encoder"}


def entity_texts_for(tokenizer, records: Sequence[Any], template: str, max_pieces: int) -> EntityTexts:
    from ..kb.records import entity_text
    from ..models.passages import entity_pieces

    return EntityTexts([r.id for r in records],
                       entity_pieces(tokenizer, [entity_text(r, template) for r in records], max_pieces),
                       entity_pieces(tokenizer, [r.name for r in records], max_pieces))


def recall_at(ranked_rows: Sequence[Sequence[int]], golds: Sequence[Set[int]],
              ks: Sequence[int] = (1, 10, 100)) -> Dict[str, float]:
    """Share of (passage, gold entity) pairs whose gold is among the top k."""
    total = sum(len(g) for g in golds)
    out = {}
    for k in ks:
        hit = sum(len(g & set(int(r) for r in rows[:k])) for rows, g in zip(ranked_rows, golds))
        out[f"recall_at_{k}"] = hit / total if total else 0.0
    out["n_gold"] = float(total)
    return out


def _training_setup(config: Dict[str, Any], kind: str) -> Dict[str, Any]:
    """What both training drivers read from the config: the data settings, the
    loop settings of ``[entqa_training.<kind>.torch_training]``, the spec, the
    train/dev docs, the KB and its extension by the training docs' gold entities."""
    import spacy

    from ..kb.dense_kb import DenseKB
    from .loop import TrainingConfig

    paths = config["paths"]
    specs = resolve_specs(config)
    nlp = spacy.blank(config["nlp"]["lang"])
    train_docs = read_corpus(paths["train"], nlp)
    kb = DenseKB.from_disk(paths["kb"])
    records, n_added = extend_records(kb.records, train_docs)
    return {
        "paths": paths, "settings": _section(config, "entqa_training"),
        "kind_cfg": _section(config, "entqa_training", kind),
        "loop": TrainingConfig.from_dict(_section(config, "entqa_training", kind, "torch_training")),
        "passages": passage_settings(config), "spec": specs[0 if kind == "retriever" else 1],
        "train_docs": train_docs, "dev_docs": read_corpus(paths.get("dev"), nlp), "kb": kb,
        "records": records, "n_added": n_added,
    }


def train_retriever(config: Dict[str, Any], output_dir: Any, *, resume: bool = False,
                    show_progress: bool = True) -> Dict[str, Any]:
    """Train the EntQA retriever with multi-label NCE, 90/10 random/hard negatives and
    an index refresh at every evaluation (default: every epoch).

    ``config``: an interpolated pipeline config (``configs/entqa.cfg``) with
    ``[paths]`` train/dev/kb and ``[entqa_training.retriever]``. The KB is extended
    with the training docs' gold entities (name only) for training only. Writes
    ``model-best``/``model-last`` (``save_retriever`` folders) and ``summary.json``."""
    import srsly

    from ..errors import Errors
    from ..models.retriever import save_retriever
    from .loop import steps_per_epoch, train_loop
    from .negatives import HardNegativeMiner

    run = _training_setup(config, "retriever")
    paths, settings, rcfg, loop_cfg = run["paths"], run["settings"], run["kind_cfg"], run["loop"]
    ps, spec, kb = run["passages"], run["spec"], run["kb"]
    train_docs, dev_docs, records, n_added = (run["train_docs"], run["dev_docs"], run["records"],
                                              run["n_added"])
    kb_ids = set(kb.ids)
    model = spec.build(rcfg.get("init") or None)
    if settings.get("freeze_embeddings", True):
        freeze_embeddings(model)
    tok = model.tokenizer
    texts = entity_texts_for(tok, records, kb.template, spec.max_entity_pieces)
    coref = bool(settings.get("include_coref", False))
    tps = [tp for tp in training_passages(train_docs, tok, kb_ids=texts.row_of, include_coref=coref,
                                          **ps) if tp.golds]
    if not tps:
        raise ValueError(Errors.KBE206.format(source=paths["train"], n_docs=len(train_docs)))
    dev_tps = [tp for tp in training_passages(dev_docs, tok, kb_ids=kb_ids, include_coref=coref,
                                              **ps) if tp.golds]
    miner = HardNegativeMiner(model, texts.full, [tp.passage for tp in tps] +
                              [tp.passage for tp in dev_tps], pool=int(rcfg.get("pool", 100)))
    dev_golds = [{texts.row_of[q] for q in tp.golds} for tp in dev_tps]
    if not loop_cfg.eval_every:
        loop_cfg.eval_every = steps_per_epoch(len(tps), loop_cfg)
    miner.refresh(show_progress=show_progress)

    def evaluate() -> Dict[str, float]:
        miner.refresh(show_progress=False)  # the index refresh
        scores = recall_at([miner.ranked(len(tps) + i) for i in range(len(dev_tps))], dev_golds)
        return scores if dev_tps else {"recall_at_10": 0.0}

    def loss_fn(batch: List[int]):
        return retriever_batch_loss(
            model, [(i, tps[i]) for i in batch], texts, miner.ranked,
            n_negatives=int(rcfg.get("n_negatives", 31)),
            hard_fraction=float(rcfg.get("hard_fraction", 0.1)), rng=numpy.random,
            text_rng=random, desc_dropout=float(settings.get("desc_dropout", 0.0)))

    result = train_loop(model, list(range(len(tps))), loss_fn, loop_cfg, output_dir,
                        evaluate=evaluate, score_key="recall_at_10",
                        export=lambda d: save_retriever(model, d), resume=resume,
                        show_progress=show_progress)
    summary = {"train_docs": len(train_docs), "dev_docs": len(dev_docs),
               "train_passages": len(tps), "dev_passages": len(dev_tps),
               "kb_entities": len(kb), "added_entities": n_added, "steps": result.steps,
               "seconds": result.seconds, "best_score": result.best_score,
               "history": result.history, "stopped": result.stopped}
    srsly.write_json(Path(output_dir) / "summary.json", summary)
    return summary


def _rewindow(tps: Sequence[TrainPassage], docs: Sequence[Doc], tokenizer,
              settings: Dict[str, Any]) -> List[Passage]:
    """The same windows as ``tps`` with another model's word pieces."""
    cache: Dict[int, Any] = {}
    out = []
    for tp in tps:
        p = tp.passage
        if p.doc_index not in cache:
            cache[p.doc_index] = doc_pieces(tokenizer, docs[p.doc_index], settings["topic"],
                                            settings["topic_length"])
        dp = cache[p.doc_index]
        out.append(Passage(p.doc_index, p.start, p.end, dp.pieces[p.start:p.end], dp.topic))
    return out


def train_reader(config: Dict[str, Any], output_dir: Any, *, resume: bool = False,
                 show_progress: bool = True) -> Dict[str, Any]:
    """Train the EntQA reader (6.2) on candidates from the trained retriever
    (``[paths] retriever``): all gold entities of a passage plus the best-ranked
    others, ``n_candidates`` in all, in a new order at every step. Passages
    without a gold entity teach the rejection. The dev score is the negative dev
    loss. Writes ``model-best``/``model-last`` and ``summary.json``."""
    import srsly

    from ..errors import Errors
    from ..models.reader import save_reader
    from ..models.retriever import load_retriever
    from .loop import steps_per_epoch, train_loop
    from .negatives import HardNegativeMiner

    run = _training_setup(config, "reader")
    paths, settings, rcfg, loop_cfg = run["paths"], run["settings"], run["kind_cfg"], run["loop"]
    ps, spec, kb = run["passages"], run["spec"], run["kb"]
    train_docs, dev_docs, records, n_added = (run["train_docs"], run["dev_docs"], run["records"],
                                              run["n_added"])
    coref = bool(settings.get("include_coref", False))
    reader = spec.build(rcfg.get("init") or None)
    if settings.get("freeze_embeddings", True):
        freeze_embeddings(reader)
    train_top_layers(reader, int(rcfg.get("trainable_layers", 0)))
    scale_head_lr(reader, float(rcfg.get("head_lr_scale", 1.0)))
    tok = reader.tokenizer
    ids = [r.id for r in records]
    row_of = {q: i for i, q in enumerate(ids)}
    tps = training_passages(train_docs, tok, kb_ids=row_of, include_coref=coref, **ps)
    dev_tps = training_passages(dev_docs, tok, kb_ids=row_of, include_coref=coref, **ps)
    if not any(tp.golds for tp in tps):
        raise ValueError(Errors.KBE206.format(source=paths["train"], n_docs=len(train_docs)))
    # candidates: the trained retriever's ranking of the training KB
    retriever = load_retriever(paths["retriever"])
    rtexts = entity_texts_for(retriever.tokenizer, records, kb.template,
                              retriever.spec.max_entity_pieces)
    rpass = (_rewindow(tps, train_docs, retriever.tokenizer, ps) +
             _rewindow(dev_tps, dev_docs, retriever.tokenizer, ps))
    n_cand = int(rcfg.get("n_candidates", 16))
    miner = HardNegativeMiner(retriever, rtexts.full, rpass, pool=2 * n_cand + 8)
    miner.refresh(show_progress=show_progress)
    ranked = [[ids[r] for r in miner.ranked(i)] for i in range(len(rpass))]
    del miner, retriever
    texts = entity_texts_for(tok, records, kb.template, spec.max_entity_pieces)
    dropout = float(settings.get("desc_dropout", 0.0))

    def pieces_of(q: str) -> List[int]:
        return texts.pieces(row_of[q], random, dropout)

    dev_rng = random.Random(0)
    dev_cands = [reader_candidates(tp, ranked[len(tps) + i], n_cand, dev_rng)
                 for i, tp in enumerate(dev_tps)]
    if not loop_cfg.eval_every:
        loop_cfg.eval_every = steps_per_epoch(len(tps), loop_cfg)

    def evaluate() -> Dict[str, float]:
        if not dev_tps:
            return {"neg_dev_loss": 0.0}
        total, n = 0.0, 0
        bs = max(1, loop_cfg.batch_size)
        for b in range(0, len(dev_tps), bs):
            loss = reader_batch_loss(reader, dev_tps[b: b + bs], dev_cands[b: b + bs],
                                     lambda q: texts.full[row_of[q]])
            total += float(loss) * len(dev_tps[b: b + bs])
            n += len(dev_tps[b: b + bs])
        return {"neg_dev_loss": -total / n}

    def loss_fn(batch: List[int]):
        chosen = [tps[i] for i in batch]
        cands = [reader_candidates(tps[i], ranked[i], n_cand, random) for i in batch]
        return reader_batch_loss(reader, chosen, cands, pieces_of)

    result = train_loop(reader, list(range(len(tps))), loss_fn, loop_cfg, output_dir,
                        evaluate=evaluate, score_key="neg_dev_loss",
                        export=lambda d: save_reader(reader, d), resume=resume,
                        show_progress=show_progress)
    summary = {"train_docs": len(train_docs), "dev_docs": len(dev_docs),
               "train_passages": len(tps), "dev_passages": len(dev_tps),
               "added_entities": n_added, "steps": result.steps, "seconds": result.seconds,
               "best_score": result.best_score, "history": result.history,
               "stopped": result.stopped, "packed": spec.packed}
    srsly.write_json(Path(output_dir) / "summary.json", summary)
    return summary
