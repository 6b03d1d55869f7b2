"""kNN label voting over relation instances: the retrieval-only relation classifier.

Training instances (``render.pair_instances``: the sentence with ``[E1 ..]``/``[E2 ..]``
marks, directed label) are embedded with an encoder (zero-shot MiniLM by default)
into a FAISS ``VectorIndex``; a query instance takes the label with the largest sum
of similarities among its ``k`` nearest training instances (never instances of its
own sentence). Used as the ``knn`` benchmark system and by the README demo.
"""
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.tokens import Doc

from .render import NO_RELATION, doc_key, pair_instances, relation_from_instance


class KNNRelationClassifier:
    def __init__(self, encoder, *, k: int = 5):
        self.encoder = encoder
        self.k = int(k)
        self.instances: List[Dict[str, Any]] = []
        self.index = None

    def fit(self, docs: Iterable[Doc]) -> "KNNRelationClassifier":
        from ..kb.index import VectorIndex

        self.instances = []
        for doc in docs:
            key = doc_key(doc)
            for inst in pair_instances(doc, with_labels=True):
                inst["key"] = key
                self.instances.append(inst)
        vectors = self.encoder.encode([i["text"] for i in self.instances])
        self.index = VectorIndex.build(vectors, preset="flat") if len(self.instances) else None
        return self

    def neighbours(self, texts: Sequence[str], keys: Sequence[Optional[str]]) -> List[List[Tuple[int, float]]]:
        """``(instance row, similarity)`` of the ``k`` nearest training instances,
        leaving out instances of the query's own sentence."""
        if self.index is None or not len(texts):
            return [[] for _ in texts]
        extra = 64
        scores, rows = self.index.search(self.encoder.encode(list(texts)),
                                         min(self.k + extra, len(self.instances)))
        out = []
        for key, s_row, r_row in zip(keys, scores, rows):
            hits = [(int(r), float(s)) for r, s in zip(r_row, s_row)
                    if r >= 0 and (key is None or self.instances[int(r)]["key"] != key)]
            out.append(hits[: self.k])
        return out

    def vote(self, hits: Sequence[Tuple[int, float]]) -> Tuple[str, float]:
        """``(label, share of the similarity mass)``; ``no_relation`` without hits."""
        mass: Dict[str, float] = defaultdict(float)
        for row, sim in hits:
            mass[self.instances[row]["label"]] += max(sim, 0.0) + 1e-6
        if not mass:
            return NO_RELATION, 0.0
        label = max(sorted(mass), key=lambda l: mass[l])
        return label, mass[label] / sum(mass.values())

    def predict_docs(self, docs: Sequence[Doc]) -> List[List[Dict[str, Any]]]:
        """Relation records per doc (``no_relation`` pairs write nothing)."""
        per_doc = [pair_instances(doc, with_labels=False) for doc in docs]
        flat = [(i, inst) for i, insts in enumerate(per_doc) for inst in insts]
        hits = self.neighbours([inst["text"] for _, inst in flat],
                               [doc_key(docs[i]) for i, _ in flat])
        out: List[List[Dict[str, Any]]] = [[] for _ in docs]
        for (i, inst), h in zip(flat, hits):
            label, share = self.vote(h)
            rec = relation_from_instance(inst, label)
            if rec is not None:
                rec["score"] = round(share, 6)
                out[i].append(rec)
        return out
