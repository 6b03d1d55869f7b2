"""``icl_relation_extractor``: in-context relation (or entity) extraction with a
pluggable LLM backend and retrieved demonstrations.

For each Doc it builds a prompt (``llm.prompts.build_prompt``) from
``doc._.demonstrations`` (written by ``demo_retriever`` earlier in the pipeline;
none = zero-shot), calls the backend for the whole batch, and parses the answers
as far as possible (``llm.parsing``). Task ``re`` writes ``doc._.rel_records``
(score = ``score``, default 1.0; read via ``doc._.kb_rels`` / ``doc._.relations``); task
``ner`` writes ``doc.ents``. Everything that could not be used (backend failures,
unparsable lines, unknown entities or labels...) is listed on ``doc._.llm_errors``
as ``{"kind", "detail"}`` and counted in ``self.error_counts``; a warning (KBW300)
sums up each batch with problems. Docs with fewer than two (non-overlapping)
entities are not sent for ``re`` and get no relation. No Doc is ever dropped.
"""
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_get_examples
from spacy.util import filter_spans
from spacy.vocab import Vocab

from ..errors import Errors, Warnings
from ..extensions import install_extensions
from ..llm.parsing import parse_entities, parse_relations
from ..llm.prompts import build_prompt
from ..retrieval.render import TASKS, non_overlapping, undirected
from .base import KBPipe

SCORE_WEIGHTS = {"rel_micro_f": 1.0, "rel_micro_p": None, "rel_micro_r": None}


@Language.factory(
    "icl_relation_extractor",
    assigns=["doc._.rel_records", "doc._.llm_errors"],
    requires=["doc._.demonstrations"],
    default_config={"backend": None, "labels": [], "task": "re", "max_demonstrations": 5,
                    "input_format": "marked", "score": 1.0, "overwrite": True,
                    "scorer": {"@scorers": "spacy_kbnlp.rel_scorer.v1"}},
    default_score_weights=SCORE_WEIGHTS,
)
def make_icl_relation_extractor(nlp: Language, name: str, backend: Optional[Callable],
                                labels: List[str], task: str, max_demonstrations: int,
                                input_format: str, score: float, overwrite: bool,
                                scorer: Optional[Callable]) -> "ICLRelationExtractor":
    return ICLRelationExtractor(nlp.vocab, name, backend=backend, labels=labels, task=task,
                                max_demonstrations=max_demonstrations, input_format=input_format,
                                score=score, overwrite=overwrite, scorer=scorer)


class ICLRelationExtractor(KBPipe):
    default_batch_size = 16
    #: learned from the training examples at initialize (when the config gives none)
    DERIVED = ("labels", "format_version")

    def __init__(self, vocab: Vocab, name: str, *, backend: Optional[Callable],
                 labels: Iterable[str], task: str, max_demonstrations: int, input_format: str,
                 score: float, overwrite: bool, scorer: Optional[Callable]):
        """Settings as in the factory's ``default_config`` (their one definition)."""
        install_extensions()
        if task not in TASKS:
            raise ValueError(Errors.KBE301.format(value=task, options=", ".join(TASKS)))
        self.vocab = vocab
        self.name = name
        self.backend = backend
        self.scorer = scorer
        self.error_counts: Counter = Counter()
        self.cfg: Dict[str, Any] = {"labels": list(labels), "task": task,
                                    "max_demonstrations": int(max_demonstrations),
                                    "input_format": input_format, "score": float(score),
                                    "overwrite": overwrite, "format_version": 1}

    def read_cfg(self, path: Path) -> None:
        """Saved labels (learned at initialize) unless the config gives labels."""
        configured = list(self.cfg["labels"])
        super().read_cfg(path)
        if configured:
            self.cfg["labels"] = configured

    @property
    def labels(self) -> List[str]:
        return list(self.cfg["labels"])

    def add_label(self, label: str) -> int:
        if label in self.cfg["labels"]:
            return 0
        self.cfg["labels"].append(label)
        return 1

    def initialize(self, get_examples: Optional[Callable[[], Iterable[Example]]] = None, *,
                   nlp: Optional[Language] = None, labels: Optional[List[str]] = None) -> None:
        """Labels from ``labels`` or from the gold side of ``get_examples()``."""
        if labels:
            self.cfg["labels"] = list(labels)
            return
        if get_examples is None:
            return
        validate_get_examples(get_examples, "ICLRelationExtractor.initialize")
        found = set()
        for eg in get_examples():
            if self.cfg["task"] == "re":
                found.update(r["label"] for r in eg.reference._.rel_records or ())
            else:
                found.update(e.label_ for e in eg.reference.ents)
        self.cfg["labels"] = sorted(found)

    # --- prediction
    def _doc_labels(self, doc: Doc) -> List[str]:
        """The configured labels; without any, the labels of the doc's demonstrations."""
        if self.cfg["labels"]:
            return self.labels
        return sorted({undirected(l)[0] for d in doc._.demonstrations or () for l in d.get("labels", ())})

    def _entities(self, doc: Doc) -> List[Span]:
        return non_overlapping(list(doc.ents))[0]

    def predict(self, docs: List[Doc]) -> List[Dict[str, Any]]:
        """Per doc ``{"items": records or spans, "errors": [...], "prompt": str|None}``."""
        if self.backend is None:  # nlp.initialize() cannot help: the backend is a setting
            raise ValueError(Errors.KBE173.format(name=self.name))
        task = self.cfg["task"]
        prompts: List[Optional[str]] = []
        for doc in docs:
            if task == "re" and len(self._entities(doc)) < 2:
                prompts.append(None)
            elif not doc.text.strip():
                prompts.append(None)
            else:
                prompts.append(build_prompt(doc, self._doc_labels(doc), task=task,
                                            demonstrations=doc._.demonstrations,
                                            max_demonstrations=self.cfg["max_demonstrations"],
                                            input_format=self.cfg["input_format"]))
        asked = [p for p in prompts if p is not None]
        try:
            answers = list(self.backend(asked)) if asked else []
        except Exception as err:  # a misbehaving backend must not lose the batch
            answers = [{"text": None, "error": f"{type(err).__name__}: {err}"} for _ in asked]
        if len(answers) != len(asked):
            answers = (answers + [{"text": None, "error": "no answer returned"}] * len(asked))[:len(asked)]
        out: List[Dict[str, Any]] = []
        it = iter(answers)
        for doc, prompt in zip(docs, prompts):
            if prompt is None:
                out.append({"items": [], "errors": [], "prompt": None})
                continue
            ans = next(it)
            if ans.get("error"):
                out.append({"items": [], "errors": [{"kind": "backend_error",
                                                     "detail": str(ans["error"])[:300]}],
                            "prompt": prompt})
                continue
            if task == "re":
                items, errors = parse_relations(ans.get("text"), self._entities(doc), self._doc_labels(doc))
            else:
                items, errors = parse_entities(ans.get("text"), doc, self._doc_labels(doc))
            out.append({"items": items, "errors": errors, "prompt": prompt})
        return out

    def set_annotations(self, docs: List[Doc], preds: List[Dict[str, Any]]) -> None:
        batch_counts: Counter = Counter()
        for doc, pred in zip(docs, preds):
            doc._.llm_errors = [dict(e) for e in pred["errors"]]
            batch_counts.update(e["kind"] for e in pred["errors"])
            if self.cfg["task"] == "re":
                if self.cfg["overwrite"] or not doc._.rel_records:
                    doc._.rel_records = [dict(r, score=self.cfg["score"]) for r in pred["items"]]
            elif pred["items"] or self.cfg["overwrite"]:
                spans = [Span(doc, s, e, label=l) for s, e, l in pred["items"]]
                keep = [] if self.cfg["overwrite"] else list(doc.ents)
                doc.ents = filter_spans(keep + spans)
        if batch_counts:
            self.error_counts.update(batch_counts)
            warnings.warn(Warnings.KBW300.format(
                name=self.name, n=sum(1 for p in preds if p["errors"]),
                kinds=", ".join(f"{k}: {v}" for k, v in sorted(batch_counts.items()))))
