"""``insgenel_linker``: generative entity linking with prefix-tree constrained decoding
(INSGENEL) and its retrieval-augmented variant (INSGENEL-R).

A generative model (any Hugging Face seq2seq model or causal LM; default an
encoder-decoder warm-started from the bundled MiniLM, like ``seq2seq_coref``)
rewrites each segment of the document with ``{mention}[entity name]`` markup under
the grammar of :mod:`spacy_kbnlp.models.insgenel`: copy the source outside markup,
only KB names (canonical names, and with ``aliases`` also labels and aliases)
inside brackets. The model is loaded in :meth:`initialize` or :meth:`from_disk`,
never in the factory.

``mode = "retrieval"`` (INSGENEL-R): the dense retriever of a trained
``entqa_linker`` (embedded in this component, see ``retriever_pipeline``) retrieves
the ``top_k`` entities of each document; only their surface forms found in the text
(decision spans) may become mentions, with only their entities' names, and the
model is called only where the grammar leaves a choice.

Annotations are the same as ``entqa_linker``'s, so the two are interchangeable:
``doc.spans[spans_key]`` (``kb_id_`` = entity id), ``doc._.kb_links`` records read
by ``span._.link_score`` (the model's probability of the mention's markup) and
``span._.kb_candidates`` (the entities sharing the written name), and optionally
``doc.ents``. Counters of the work done (segments, generative calls, tokens) are in
``self.stats``.
"""
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
import srsly
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab

from ..errors import Errors, Warnings
from ..extensions import install_extensions
from ..linking.annotate import set_links
from ..models.insgenel import (ACTIONS, ELSettings, InsGenELModel, NameTable,
                               decision_candidates, link_score, segments, word_bounds)
from .base import KBPipe

FORMAT_VERSION = 1
MODES = ("full", "retrieval")
RETRIEVER_DIR = "retriever"

# (start token, end token, kb_id, score, [[kb_id, score], ...])
Links = List[Tuple[int, int, str, float, List[List[Any]]]]


@Language.factory(
    "insgenel_linker",
    assigns=["doc.ents", "doc.spans", "doc._.kb_links"],
    default_config={
        "model": None,
        "warm_start": None,
        "decoder_layers": 3,
        "kb": None,
        "aliases": True,
        "mode": "full",
        "top_k": 64,
        "segment_length": 128,
        "max_mention_units": 24,
        "max_target_length": 512,
        "action": "copy",
        "freeze_encoder": True,
        "train_negatives": 4096,
        "decoding": "greedy",
        "beam_size": 4,
        "speculative": 8,
        "threshold": 0.0,
        "batch_size": 16,
        "device": None,
        "spans_key": "insgenel",
        "label": "ENTITY",
        "set_ents": True,
        "overwrite_ents": False,
        "scorer": {"@scorers": "spacy_kbnlp.el_scorer.v1"},
    },
    default_score_weights={"el_micro_f": 1.0, "el_micro_p": 0.0, "el_micro_r": 0.0},
)
def make_insgenel_linker(
    nlp: Language,
    name: str,
    model: Optional[str],
    warm_start: Optional[str],
    decoder_layers: Optional[int],
    kb: Optional[str],
    aliases: bool,
    mode: str,
    top_k: int,
    segment_length: int,
    max_mention_units: int,
    max_target_length: int,
    action: str,
    freeze_encoder: bool,
    train_negatives: int,
    decoding: str,
    beam_size: int,
    speculative: int,
    threshold: float,
    batch_size: int,
    device: Optional[str],
    spans_key: str,
    label: str,
    set_ents: bool,
    overwrite_ents: bool,
    scorer: Optional[Callable],
) -> "InsGenELLinker":
    """Generative entity linker. ``model``: a seq2seq model or causal LM path/name
    (None: warm-start an encoder-decoder from ``warm_start``, None = the bundled
    MiniLM, with ``decoder_layers`` decoder layers). ``kb``: a DenseKB folder or
    entity file (or give ``kb_loader`` to initialize). ``mode``: ``full`` (INSGENEL)
    or ``retrieval`` (INSGENEL-R, ``top_k`` retrieved entities per document).
    ``action``: ``copy`` (the model predicts a copy symbol for copied source
    tokens, so training concentrates on the markup and the names) or ``token``.
    ``speculative`` > 0 proposes that many copied tokens per forward pass (same
    output, fewer passes). Links whose markup probability is at most ``threshold``
    are dropped. Training (``python -m spacy_kbnlp train``) updates the decoder only
    with ``freeze_encoder`` and uses a softmax over the batch's tokens plus
    ``train_negatives`` sampled ones (0: the whole vocabulary)."""
    return InsGenELLinker(
        nlp.vocab, name, model=model, warm_start=warm_start, decoder_layers=decoder_layers,
        kb=kb, aliases=aliases, mode=mode, top_k=top_k, segment_length=segment_length,
        max_mention_units=max_mention_units, max_target_length=max_target_length,
        action=action, freeze_encoder=freeze_encoder, train_negatives=train_negatives,
        decoding=decoding, beam_size=beam_size, speculative=speculative, threshold=threshold,
        batch_size=batch_size, device=device, spans_key=spans_key, label=label,
        set_ents=set_ents, overwrite_ents=overwrite_ents, scorer=scorer,
        splitter=nlp.tokenizer)


class InsGenELLinker(KBPipe):
    """INSGENEL / INSGENEL-R entity linker (a ``Pipe`` holding a torch model, STYLE 1.6)."""

    ARCHITECTURE = ("action",)

    def __init__(self, vocab: Vocab, name: str, *, model: Optional[str],
                 warm_start: Optional[str], decoder_layers: Optional[int], kb: Optional[str],
                 aliases: bool, mode: str, top_k: int, segment_length: int,
                 max_mention_units: int, max_target_length: int, action: str,
                 freeze_encoder: bool, train_negatives: int, decoding: str, beam_size: int,
                 speculative: int, threshold: float, batch_size: int, device: Optional[str],
                 spans_key: str, label: str, set_ents: bool, overwrite_ents: bool,
                 scorer: Optional[Callable], splitter: Optional[Callable] = None):
        """Settings as in the factory's ``default_config`` (their one definition)."""
        install_extensions()
        self.vocab = vocab
        self.name = name
        self.scorer = scorer
        self.splitter = splitter
        self.cfg: Dict[str, Any] = {
            "model": model, "warm_start": warm_start, "decoder_layers": decoder_layers,
            "kb": None if kb is None else str(kb), "aliases": aliases, "mode": mode,
            "top_k": top_k, "segment_length": segment_length,
            "max_mention_units": max_mention_units, "max_target_length": max_target_length,
            "action": action, "freeze_encoder": freeze_encoder,
            "train_negatives": train_negatives,
            "decoding": decoding, "beam_size": beam_size, "speculative": speculative,
            "threshold": threshold, "batch_size": batch_size, "device": device,
            "spans_key": spans_key, "label": label, "set_ents": set_ents,
            "overwrite_ents": overwrite_ents, "format_version": FORMAT_VERSION,
        }
        self.check_settings()
        self.el_model: Optional[InsGenELModel] = None
        self.kb: Optional[NameTable] = None
        self.retriever: Any = None  # an EntQALinker, used for its retrieval only
        self.stats: Dict[str, float] = defaultdict(float)
        self._optimizer = None
        self._retriever_rows: Optional[numpy.ndarray] = None

    # ------------------------------------------------------------ settings
    def check_settings(self) -> None:
        c = self.cfg

        def bad(setting: str, why: str) -> ValueError:
            return ValueError(Errors.KBE351.format(setting=setting, name=self.name,
                                                   value=c[setting], why=why))

        self.check_ints(("top_k", "segment_length", "max_mention_units", "max_target_length",
                         "beam_size", "batch_size"), 1, bad)
        self.check_ints(("train_negatives", "speculative"), 0, bad)
        if c["mode"] not in MODES:
            raise bad("mode", f"choose one of {', '.join(MODES)}")
        if c["action"] not in ACTIONS:
            raise bad("action", f"choose one of {', '.join(ACTIONS)}")
        if c["decoding"] not in ("greedy", "beam"):
            raise bad("decoding", "choose greedy or beam")
        if not 0.0 <= float(c["threshold"]) < 1.0:
            raise bad("threshold", "a probability threshold in [0, 1)")

    @property
    def settings(self) -> ELSettings:
        c = self.cfg
        return ELSettings(segment_length=c["segment_length"],
                          max_mention_units=c["max_mention_units"],
                          max_target_length=c["max_target_length"],
                          action=c["action"], train_negatives=c["train_negatives"])

    @property
    def is_initialized(self) -> bool:
        return self.el_model is not None and self.kb is not None

    def _require(self) -> InsGenELModel:
        if not self.is_initialized:
            raise ValueError(Errors.KBE350.format(name=self.name))
        return self.el_model  # type: ignore[return-value]

    @property
    def is_trainable(self) -> bool:
        return True

    @property
    def pipe_batch_size(self) -> int:
        return self.cfg["batch_size"]

    def torch_modules(self) -> List[Any]:
        return [self.el_model.model] if self.el_model is not None else []

    @property
    def torch_module(self) -> Any:
        """The torch module that training updates (for the training loop); with
        ``freeze_encoder`` the encoder of a seq2seq model gets no gradient."""
        model = self._require()
        if not model.causal:
            for param in model.model.get_encoder().parameters():
                param.requires_grad_(not self.cfg["freeze_encoder"])
        return model.model

    # ------------------------------------------------------------ set-up
    def initialize(
        self,
        get_examples: Optional[Callable[[], Iterable[Example]]] = None,
        *,
        nlp: Optional[Language] = None,
        kb_loader: Optional[Callable[..., Any]] = None,
        model_path: Optional[str] = None,
        retriever_pipeline: Optional[str] = None,
        retriever_component: str = "entqa_linker",
    ) -> None:
        """Load the model (``model_path`` overrides the ``model`` setting; none:
        warm start) and the KB names (``kb_loader``, e.g.
        ``spacy_kbnlp.DenseKBFromDisk.v1``, or the ``kb`` setting; none: the
        retriever's KB). ``retriever_pipeline``: a trained pipeline whose
        ``retriever_component`` (an ``entqa_linker``) serves INSGENEL-R."""
        if get_examples is not None:
            validate_get_examples(get_examples, "InsGenELLinker.initialize")
        if retriever_pipeline:
            self.attach_retriever(retriever_pipeline, retriever_component)
        records = None
        if kb_loader is not None:
            kb = kb_loader(self.vocab) if callable(kb_loader) else kb_loader
            records = list(kb.records)
        elif self.cfg["kb"]:
            from ..kb.records import load_records

            records = load_records(self.cfg["kb"], duplicates="first")
        elif self.retriever is not None:
            records = list(self.retriever.kb.records)
        if records is None:
            raise ValueError(Errors.KBE350.format(name=self.name) + " (no KB: give `kb` or "
                             "`kb_loader`)")
        path = model_path if model_path else self.cfg["model"]
        self.el_model = InsGenELModel.load(
            path, self.settings, warm_start=self.cfg["warm_start"], device=self.cfg["device"],
            decoder_layers=self.cfg["decoder_layers"], name=self.name)
        self.set_kb(records)

    def set_kb(self, records: Sequence[Any]) -> None:
        """The entities (records with ``id``, ``name``, ``aliases``, ``description``)
        that the linker may name."""
        table = NameTable.from_records(list(records), aliases=self.cfg["aliases"])
        self._set_table(table)

    def _set_table(self, table: NameTable) -> None:
        model = self._model_or_none()
        if model is None:
            self.kb = table
            return
        table.build(model.tokenizer, self.splitter)
        if not table.seqs:
            raise ValueError(Errors.KBE352.format(name=self.name, n=len(table)))
        if table.skipped:
            warnings.warn(Warnings.KBW350.format(name=self.name, n=len(table.skipped),
                                                 examples=table.skipped[:3]))
        self.kb = table
        self._retriever_rows = None

    def _model_or_none(self) -> Optional[InsGenELModel]:
        return self.el_model

    def attach_retriever(self, pipeline: Union[str, Path, Any],
                         component: str = "entqa_linker") -> None:
        """Use the retriever of a trained ``entqa_linker`` (a pipeline path or the
        component itself) for INSGENEL-R; its KB must be this linker's KB."""
        if isinstance(pipeline, (str, Path)):
            import spacy

            pipeline = spacy.load(pipeline).get_pipe(component)
        if not getattr(pipeline, "is_initialized", False) or not hasattr(pipeline, "retrieve"):
            raise ValueError(Errors.KBE354.format(name=self.name))
        self.retriever = pipeline
        self._retriever_rows = None

    # ------------------------------------------------------------ prediction
    def predict(self, docs: Iterable[Doc]) -> List[Links]:
        """Links ``(start, end, kb_id, score, candidates)`` per doc; touches no Doc."""
        model = self._require()
        self.place()
        docs = list(docs)
        retrieved: List[Optional[List[int]]] = [None] * len(docs)
        if self.cfg["mode"] == "retrieval":
            retrieved = self.retrieve(docs)
        return [self._predict_doc(model, doc, rows) for doc, rows in zip(docs, retrieved)]

    def retrieve(self, docs: Sequence[Doc]) -> List[List[int]]:
        """INSGENEL-R: the ``top_k`` entities (rows of :attr:`kb`) of each doc, best
        first: the entqa retriever's top entities per passage, ranked by their best
        passage score."""
        if self.retriever is None:
            raise ValueError(Errors.KBE354.format(name=self.name))
        r = self.retriever
        rows_map = self._map_retriever_rows()
        best: List[Dict[int, float]] = [dict() for _ in docs]
        passages = [p for p, _ in r.passages(docs)]
        bs = int(r.cfg["batch_size"])
        for b in range(0, len(passages), bs):
            chunk = passages[b: b + bs]
            scores, rows = r.retrieve(chunk)
            for p, srow, rrow in zip(chunk, scores, rows):
                found = best[p.doc_index]
                for s, row in zip(srow.tolist(), rrow.tolist()):
                    if row < 0 or rows_map[row] < 0:
                        continue
                    k = int(rows_map[row])
                    if s > found.get(k, -numpy.inf):
                        found[k] = s
        k = self.cfg["top_k"]
        return [[row for row, _ in sorted(f.items(), key=lambda x: (-x[1], x[0]))[:k]]
                for f in best]

    def _map_retriever_rows(self) -> numpy.ndarray:
        """Retriever KB row -> row of :attr:`kb` (-1: unknown, KBE355 if most are)."""
        if self._retriever_rows is None:
            ids = list(self.retriever.kb.ids)
            rows = numpy.array([self.kb.row_of.get(i, -1) for i in ids], dtype=numpy.int64)
            missing = [i for i, r in zip(ids, rows) if r < 0]
            if len(missing) > len(ids) // 2:
                raise ValueError(Errors.KBE355.format(name=self.name, n=len(missing),
                                                      total=len(ids), examples=missing[:3]))
            self._retriever_rows = rows
        return self._retriever_rows

    def _predict_doc(self, model: InsGenELModel, doc: Doc, rows: Optional[List[int]]) -> Links:
        c = self.cfg
        st = self.stats
        start_time = time.perf_counter()
        st["docs"] += 1
        units = model.doc_units(doc)
        table = self.kb
        surface = table.subset_trie(rows) if rows is not None else None
        trie = table.trie() if rows is None else None
        links: Links = []
        greedy = c["decoding"] == "greedy"
        for a, b in segments(units, c["segment_length"]):
            st["segments"] += 1
            seg = units.ids[a:b]
            starts, ends = word_bounds(units, a, b)
            if surface is not None:
                matches = decision_candidates(seg, starts, ends, surface)
                if not matches:
                    st["segments_skipped"] += 1
                    st["tokens"] += len(seg)
                    continue
                cands: Dict[int, Dict[int, Any]] = defaultdict(dict)
                for (s, e), ents in matches.items():
                    cands[s][e] = table.subset_trie(ents)
                grammar = model.grammar(seg, starts, ends, candidates=dict(cands))
                st["decision_spans"] += len(matches)
                found, out = model.decode(grammar, skip_forced=greedy, method=c["decoding"],
                                          beam_size=c["beam_size"])
            else:
                grammar = model.grammar(seg, starts, ends, trie)
                found, out = model.decode(grammar, n_propose=c["speculative"] if greedy else 0,
                                          method=c["decoding"], beam_size=c["beam_size"])
            st["segments_decoded"] += 1
            st["forward"] += out.n_forward
            st["tokens"] += len(out.tokens)
            if not out.finished:
                st["unfinished"] += 1
                warnings.warn(Warnings.KBW352.format(name=self.name, n=1, limit=grammar.max_length))
            for link in found:
                words = units.unit_span_to_words(a + link[0], a + link[1])
                if words is None or not link[2]:
                    continue
                score = link_score(link, out.token_scores, out.allowed_mass)
                if score <= c["threshold"]:
                    st["below_threshold"] += 1
                    continue
                written = out.tokens[link[3]:link[4] + 1][2 + link[1] - link[0]:-1]
                ents = table.resolve(link[2], written)
                cands_ = [[table.ids[r], score] for r in ents]
                links.append((words[0], words[1], table.ids[ents[0]], score, cands_))
        st["seconds"] += time.perf_counter() - start_time
        return links

    def set_annotations(self, docs: Iterable[Doc], preds: List[Links]) -> None:
        c = self.cfg
        for doc, links in zip(docs, preds):
            set_links(doc, links, key=c["spans_key"], label=c["label"], set_ents=c["set_ents"],
                      overwrite_ents=c["overwrite_ents"])

    def markup_text(self, doc: Doc) -> str:
        """``doc.text`` with this component's links as ``{mention}[entity name]``
        (the canonical KB name of the linked entity)."""
        parts: List[str] = []
        pos = 0
        for span in doc.spans[self.cfg["spans_key"]] if self.cfg["spans_key"] in doc.spans else ():
            row = self.kb.row_of.get(span.kb_id_) if self.kb is not None else None
            name = self.kb.names[row] if row is not None else span.kb_id_
            parts.append(doc.text[pos:span.start_char])
            parts.append(f"{{{span.text}}}[{name}]")
            pos = span.end_char
        parts.append(doc.text[pos:])
        return "".join(parts)

    # ------------------------------------------------------------ training
    def training_items(self, examples: Iterable[Example], *,
                       stats: Optional[Dict[str, int]] = None) -> List[Dict[str, Any]]:
        """Training segments (JSON-like) of gold EL examples, for the training loop:
        the evaluation span of each doc in segments, gold in-KB mentions (the KB
        extended with the docs' gold entities by name) as markup targets."""
        from ..training.insgenel import training_items

        model = self._require()
        counts: Dict[str, int] = defaultdict(int)
        docs = [eg.reference for eg in examples]
        items = training_items(model, self.kb, docs, splitter=self.splitter,
                               segment_length=self.cfg["segment_length"], stats=counts)
        if stats is not None:
            stats.update(counts)
        stats = counts
        for key, why, fix in (
                ("cut", "they cross a segment edge", "raise `segment_length`"),
                ("overlap", "nested in or overlapping another gold mention",
                 "the markup is flat; the outermost mention is kept")):
            if stats.get(key):
                warnings.warn(Warnings.KBW351.format(name=self.name, n=stats[key], why=why,
                                                     fix=fix))
        return items

    def training_loss(self, items: List[Dict[str, Any]]) -> Any:
        """Mean token cross-entropy of a batch of training items (a torch scalar)."""
        return self._require().loss(items)

    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd: Any = None,
               losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """One AdamW step on ``examples`` with the component's own optimizer (``sgd`` is
        ignored: the weights are torch's). Prefer ``python -m spacy_kbnlp train``."""
        from ..training.loop import component_update

        examples = list(examples)
        validate_examples(examples, "InsGenELLinker.update")
        return component_update(self, examples, losses)

    # ------------------------------------------------------------ scoring
    def score_settings(self, settings: Dict[str, Any]) -> Dict[str, Any]:
        """``el_*`` scores of ``doc.spans[spans_key]``, InKB relative to this KB."""
        if self.kb is not None and settings.get("kb_ids") is None:
            settings["kb_ids"] = set(self.kb.ids)
        return settings

    # ------------------------------------------------------------ serialization
    def before_save(self) -> None:
        self._require()

    def upgrade_cfg(self, saved: Dict[str, Any]) -> Dict[str, Any]:
        if "architecture" not in saved:
            saved.setdefault("action", "token")  # folders saved before the copy action
        return saved

    def serializers(self) -> Dict[str, Callable[[Path], None]]:
        out = {"model": lambda p: self.el_model.save(p),
               "names": lambda p: srsly.write_msgpack(p, self.kb.to_dict())}
        if self.retriever is not None:
            out[RETRIEVER_DIR] = lambda p: self.retriever.to_disk(p)
        return out

    def deserializers(self) -> Dict[str, Callable[[Path], None]]:
        return {"model": self._load_model, "names": self._load_names,
                RETRIEVER_DIR: self._load_retriever}

    def _load_model(self, p: Path) -> None:
        if not (p / "config.json").exists():
            raise ValueError(Errors.KBE358.format(name=self.name, path=p.parent,
                                                  missing="model/config.json"))
        self.el_model = InsGenELModel.from_dir(p, self.settings, device=self.device,
                                               name=self.name)

    def _load_names(self, p: Path) -> None:
        if not p.exists():
            raise ValueError(Errors.KBE358.format(name=self.name, path=p.parent,
                                                  missing="names"))
        self._names_data = srsly.read_msgpack(p)

    def _load_retriever(self, p: Path) -> None:
        if p.exists():
            self.attach_retriever(_entqa_linker_for(p).from_disk(p))

    def after_load(self, path: Path) -> None:
        self._set_table(NameTable.from_dict(self._names_data))
        del self._names_data

    def after_bytes(self, path: Path) -> None:
        if self.retriever is not None:
            self.retriever.after_bytes(path / RETRIEVER_DIR)


def _entqa_linker_for(path: Path) -> Any:
    """An ``entqa_linker`` configured for the reader saved in ``path`` (otherwise
    default settings), to be filled by ``from_disk``."""
    import spacy

    from ..models.reader import saved_reader_config

    return spacy.blank("en").add_pipe(
        "entqa_linker", config={"reader": saved_reader_config(path / "reader")})
