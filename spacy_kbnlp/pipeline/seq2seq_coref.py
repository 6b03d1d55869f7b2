"""``seq2seq_coref``: coreference resolution as constrained sequence-to-sequence generation.

Wraps any Hugging Face seq2seq model (T5, BART, mT5, an encoder-decoder) given by
path or name; by default an encoder-decoder warm-started from the bundled
all-MiniLM-L6-v2 (encoder and decoder both start from it; no download). The model
is loaded in :meth:`initialize` or :meth:`from_disk`, never in the factory.

Results: ``doc.spans["coref_clusters_1"]``, ``..._2``, ... (the spacy-experimental
convention), ``doc._.coref_clusters`` (lists of Spans), ``span._.coref_cluster``
(the cluster number of a mention) and ``doc._.resolved_text``.
"""
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab

from ..core.bundled import bundled_ref, is_bundled_ref, resolve_bundled
from ..errors import Errors, Warnings
from ..extensions import DEFAULT_CLUSTER_PREFIX, install_extensions, set_coref_clusters
from ..models.coref_grammar import MERGES
from ..models.coref_linker import SPEC_FILE, PairLinker
from ..models.seq2seq import ModelSettings, Seq2SeqCorefModel, check_spec
from .base import KBPipe

FORMAT_VERSION = 1
SCORE_KEYS = tuple(
    [f"coref_{m}_{x}" for m in ("muc", "b3", "ceafe", "lea") for x in ("p", "r", "f")]
    + ["coref_conll_f"] + [f"coref_mention_{x}" for x in ("p", "r", "f")] + ["coref_docs"])
DEFAULT_SCORE_WEIGHTS = {key: None for key in SCORE_KEYS}
DEFAULT_SCORE_WEIGHTS["coref_conll_f"] = 1.0
DEFAULT_SCORE_WEIGHTS["coref_lea_f"] = 0.0

Clusters = List[List[Tuple[int, int]]]


@Language.factory(
    "seq2seq_coref",
    assigns=["doc.spans", "doc._.coref_clusters", "doc._.resolved_text"],
    default_config={
        "model": None,
        "warm_start": None,
        "decoder_layers": 3,
        "representation": "full",
        "action": "copy",
        "aligned_input": False,
        "segment_length": 256,
        "stride": 128,
        "train_stride": 192,
        "max_target_length": 512,
        "max_clusters": 100,
        "decoding": "greedy",
        "beam_size": 4,
        "speculative": 4,
        "batch_segments": 32,
        "merge": "agreement",
        "pronoun_agreement": True,
        "name_match": True,
        "relink": True,
        "link_threshold": 0.2,
        "mention_bias": 0.0,
        "keep_singletons": False,
        "span_cluster_prefix": DEFAULT_CLUSTER_PREFIX,
        "progress": False,
        "warn_tokens": 20000,
        "device": None,
        "scorer": {"@scorers": "spacy_kbnlp.coref_scorer.v1"},
    },
    default_score_weights=DEFAULT_SCORE_WEIGHTS,
)
def make_seq2seq_coref(
    nlp: Language,
    name: str,
    model: Optional[str],
    warm_start: Optional[str],
    decoder_layers: Optional[int],
    representation: str,
    action: str,
    aligned_input: bool,
    segment_length: int,
    stride: int,
    train_stride: int,
    max_target_length: int,
    max_clusters: int,
    decoding: str,
    beam_size: int,
    speculative: int,
    batch_segments: int,
    merge: str,
    pronoun_agreement: bool,
    name_match: bool,
    relink: bool,
    link_threshold: float,
    mention_bias: float,
    keep_singletons: bool,
    span_cluster_prefix: str,
    progress: bool,
    warn_tokens: int,
    device: Optional[str],
    scorer: Optional[Callable],
) -> "Seq2SeqCoref":
    """Seq2seq coreference. ``model``: a seq2seq model path/name (None: warm-start an
    encoder-decoder from ``warm_start``, None = the bundled MiniLM, with
    ``decoder_layers`` decoder layers). ``representation``: full, partial or
    integer_free; ``action``: copy or token; ``aligned_input``: the decoder also reads
    the encoder state of the source unit it copies next (full and integer-free only;
    an extension of the paper's decoder input that learns much faster). Documents are cut into segments of
    ``segment_length`` subword units every ``stride`` units (``train_stride`` when
    training). ``decoding``: greedy or beam (``beam_size``). Greedy decoding runs
    ``batch_segments`` segments (of all docs in a batch) through the decoder together
    (the same output as one by one, several times faster); ``speculative`` > 0 lets each
    segment propose up to that many tokens per forward pass (copied source tokens,
    forced symbols, pronoun mentions; the same output as greedy decoding). On a CPU,
    4 suits a batch (every row is padded to the longest proposal) and 8 one segment
    at a time.
    ``merge``: how clusters of overlapping segments join, ``agreement`` (linked only
    where both segments agree, each mention kept from the segment where it is most
    central) or ``union`` (any shared mention links; over-merges). ``pronoun_agreement``
    (English): a one-word pronoun may not join a cluster holding a pronoun of another
    person/number/gender (I/you/he/she/it/we/they). ``name_match``: clusters that hold
    the same name (a mention's text with a capitalized word that is not a pronoun or
    determiner) anywhere in the doc are joined, which segments cannot see.
    ``relink``: the generated mentions are re-clustered by a mention-pair linker
    (``models.coref_linker``: each mention links to its most probable antecedent when
    that probability is over ``link_threshold``) from what the segments and the merge
    said, string match, pronoun agreement and distance. The linker is fitted to a
    model's output (``python -m spacy_kbnlp coref fit-linker``) and given by
    ``initialize(linker_path=...)`` or saved with the pipeline; the bundled model
    comes with its own (fitted on its output on OntoGUM dev). A model without a
    linker keeps its generated clusters.
    ``mention_bias`` is added to the logit of ``<m>`` when decoding (0: the model as trained; > 0 makes an undertrained
    model open mentions more readily; tune it on dev). ``progress`` shows segments
    done / total on stderr; documents over ``warn_tokens`` tokens get a warning
    (KBW255) with the expected time (0: never)."""
    return Seq2SeqCoref(
        nlp.vocab, name, model=model, warm_start=warm_start, decoder_layers=decoder_layers,
        representation=representation, action=action, aligned_input=aligned_input,
        segment_length=segment_length,
        stride=stride, train_stride=train_stride, max_target_length=max_target_length,
        max_clusters=max_clusters, decoding=decoding, beam_size=beam_size,
        speculative=speculative, batch_segments=batch_segments, merge=merge,
        pronoun_agreement=pronoun_agreement, name_match=name_match, relink=relink,
        link_threshold=link_threshold, mention_bias=mention_bias,
        keep_singletons=keep_singletons, span_cluster_prefix=span_cluster_prefix,
        progress=progress, warn_tokens=warn_tokens, device=device, scorer=scorer)


class Seq2SeqCoref(KBPipe):
    """Seq2seq coreference component (a ``Pipe`` holding a torch model, STYLE 1.6)."""

    default_batch_size = 16
    ARCHITECTURE = ("representation", "action", "aligned_input", "max_clusters")

    def check_settings(self) -> None:
        c = self.cfg
        check_spec(c["representation"], c["action"])
        for key, ok in (
                ("segment_length", isinstance(c["segment_length"], int) and c["segment_length"] > 0),
                ("stride", isinstance(c["stride"], int) and 0 < c["stride"]),
                ("train_stride", isinstance(c["train_stride"], int) and 0 < c["train_stride"]),
                ("decoding", c["decoding"] in ("greedy", "beam")),
                ("beam_size", isinstance(c["beam_size"], int) and c["beam_size"] >= 1),
                ("speculative", isinstance(c["speculative"], int) and c["speculative"] >= 0),
                ("batch_segments", isinstance(c["batch_segments"], int) and c["batch_segments"] >= 1),
                ("merge", c["merge"] in MERGES),
                ("link_threshold", isinstance(c["link_threshold"], (int, float))
                 and 0.0 <= c["link_threshold"] <= 1.0),
                ("warn_tokens", isinstance(c["warn_tokens"], int) and c["warn_tokens"] >= 0),
                ("max_clusters", isinstance(c["max_clusters"], int) and c["max_clusters"] >= 1)):
            if not ok:
                raise ValueError(Errors.KBE259.format(name=key, value=c[key],
                                                      why="see the factory's documentation"))

    def __init__(self, vocab: Vocab, name: str, *, model: Optional[str],
                 warm_start: Optional[str], decoder_layers: Optional[int], representation: str,
                 action: str, aligned_input: bool, segment_length: int, stride: int,
                 train_stride: int, max_target_length: int, max_clusters: int, decoding: str,
                 beam_size: int, speculative: int, batch_segments: int, merge: str,
                 pronoun_agreement: bool, name_match: bool, relink: bool, link_threshold: float,
                 mention_bias: float,
                 keep_singletons: bool, span_cluster_prefix: str, progress: bool, warn_tokens: int,
                 device: Optional[str], scorer: Optional[Callable]):
        """Settings as in the factory's ``default_config`` (their one definition)."""
        install_extensions()
        self.vocab = vocab
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "model": model, "warm_start": warm_start, "decoder_layers": decoder_layers,
            "representation": representation, "action": action, "aligned_input": aligned_input,
            "segment_length": segment_length, "stride": stride, "train_stride": train_stride,
            "max_target_length": max_target_length, "max_clusters": max_clusters,
            "decoding": decoding, "beam_size": beam_size, "speculative": speculative,
            "batch_segments": batch_segments, "merge": merge,
            "pronoun_agreement": bool(pronoun_agreement), "name_match": name_match,
            "relink": bool(relink), "link_threshold": link_threshold,
            "mention_bias": float(mention_bias), "keep_singletons": keep_singletons,
            "span_cluster_prefix": span_cluster_prefix, "progress": bool(progress),
            "warn_tokens": warn_tokens, "device": device, "format_version": FORMAT_VERSION,
        }
        self.check_settings()
        self.coref_model: Optional[Seq2SeqCorefModel] = None
        self.linker: Optional[PairLinker] = None
        self.stats: Dict[str, float] = defaultdict(float)
        # set to a list to collect every segment's decoded tokens (benchmarks)
        self.record: Optional[List[List[int]]] = None
        self._optimizer = None

    # --- model
    @property
    def settings(self) -> ModelSettings:
        c = self.cfg
        return ModelSettings(representation=c["representation"], action=c["action"],
                             max_clusters=c["max_clusters"], segment_length=c["segment_length"],
                             max_target_length=c["max_target_length"],
                             aligned_input=bool(c.get("aligned_input", False)))

    @property
    def is_trainable(self) -> bool:
        return True

    @property
    def torch_module(self) -> Any:
        """The torch module that training updates (for the training loop)."""
        return self._require_model().model

    def torch_modules(self) -> List[Any]:
        return [self.coref_model.model] if self.coref_model is not None else []

    def _require_model(self) -> Seq2SeqCorefModel:
        if self.coref_model is None:
            raise ValueError(Errors.KBE250.format(name=self.name))
        return self.coref_model

    def initialize(self, get_examples: Optional[Callable[[], Iterable[Example]]] = None, *,
                   nlp: Optional[Language] = None, model_path: Optional[str] = None,
                   linker_path: Optional[str] = None) -> None:
        """Load the seq2seq model (``model_path`` overrides the ``model`` setting), or
        warm-start the default encoder-decoder; ``linker_path``: a pair linker folder
        (``PairLinker.to_disk``) for ``relink`` instead of the bundled one."""
        if get_examples is not None:
            validate_get_examples(get_examples, "Seq2SeqCoref.initialize")
        path = model_path if model_path else self.cfg["model"]
        self.coref_model = Seq2SeqCorefModel.load(
            path, self.settings, warm_start=self.cfg["warm_start"], device=self.cfg["device"],
            decoder_layers=self.cfg["decoder_layers"])
        self.linker = PairLinker.from_disk(linker_path) if linker_path else None

    def pair_linker(self) -> Optional[PairLinker]:
        """The linker ``relink`` uses: the one given to ``initialize`` or saved with the
        pipeline; for the bundled model, the bundled one. None when ``relink`` is off
        or the model has no linker (fit one with ``coref fit-linker``)."""
        if not self.cfg["relink"]:
            return None
        if self.linker is None and is_bundled_ref(self.cfg["model"]):
            self.linker = PairLinker.from_disk(resolve_bundled(bundled_ref("seq2seq_coref_linker")))
        return self.linker

    # --- prediction
    def predict(self, docs: Iterable[Doc]) -> List[Clusters]:
        """Clusters of token spans ``(start, end)`` per doc; touches no Doc. The
        segments of all ``docs`` are decoded together (``batch_segments`` at a time)."""
        model = self._require_model()
        self.place()
        c = self.cfg
        docs = list(docs)
        if not docs:
            return []
        start = time.perf_counter()
        model.pronoun_agreement = bool(c["pronoun_agreement"])
        n_propose = c["speculative"] if c["decoding"] == "greedy" else 0
        progress = SegmentProgress(self.name, docs, show=c["progress"],
                                   warn_tokens=c["warn_tokens"],
                                   segments=lambda d: model.n_segments(d, c["stride"]))
        try:
            out = model.predict_docs(docs, stride=c["stride"], method=c["decoding"],
                                     beam_size=c["beam_size"], n_propose=n_propose,
                                     mention_bias=c.get("mention_bias", 0.0),
                                     batch_segments=c["batch_segments"], merge=c["merge"],
                                     name_match=c["name_match"], linker=self.pair_linker(),
                                     link_threshold=c["link_threshold"], stats=self.stats,
                                     record=self.record,
                                     progress=progress)
        finally:
            progress.close()
        if not c["keep_singletons"]:
            out = [[cl for cl in clusters if len(cl) > 1] for clusters in out]
        self.stats["docs"] += len(docs)
        self.stats["seconds"] += time.perf_counter() - start
        return out

    def set_annotations(self, docs: Iterable[Doc], clusters: List[Clusters]) -> None:
        for doc, doc_clusters in zip(docs, clusters):
            set_coref_clusters(doc, doc_clusters, self.cfg["span_cluster_prefix"])

    # --- training
    def training_items(self, examples: Iterable[Example], *, stats: Optional[Dict[str, int]] = None
                       ) -> List[Dict[str, Any]]:
        """Training segments (JSON-like) of gold examples, for the training loop. Run
        the components before this one on ``eg.predicted`` first (the train command
        does) so that partial linearization sees the sentences it will see later."""
        from ..extensions import get_coref_clusters

        model = self._require_model()
        stats = stats if stats is not None else defaultdict(int)
        items: List[Dict[str, Any]] = []
        prefix = self.cfg["span_cluster_prefix"]
        for eg in examples:
            ref, pred = eg.reference, eg.predicted
            clusters = [[(s.start, s.end) for s in cl] for cl in get_coref_clusters(ref, prefix)]
            # sentences as the pipeline sees them at prediction time (e.g. a sentencizer
            # that ran on the predicted doc), else the gold ones
            sent_starts = None
            if len(pred) == len(ref) and pred.has_annotation("SENT_START"):
                sent_starts = [bool(t.is_sent_start) for t in pred]
            items.extend(model.training_items(ref, clusters, self.cfg["train_stride"], stats,
                                              sent_starts=sent_starts))
        for key, why, fix in (
                ("cut", "they cross a segment edge", "raise `train_stride` overlap or `segment_length`"),
                ("over", f"beyond max_clusters={self.cfg['max_clusters']} in a segment",
                 "raise `max_clusters`"),
                ("lost", "they cover only whitespace", "check the tokenization")):
            if stats.get(key):
                warnings.warn(Warnings.KBW250.format(name=self.name, n=stats[key], why=why, fix=fix))
        if stats.get("truncated"):
            warnings.warn(Warnings.KBW251.format(name=self.name, n=stats["truncated"],
                                                 total=stats["segments"],
                                                 limit=model.decoder_limit()))
        return items

    def training_loss(self, items: List[Dict[str, Any]]) -> Any:
        """Mean token cross-entropy of a batch of training items (a torch scalar)."""
        return self._require_model().loss(items)

    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd: Any = None,
               losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """One AdamW step on ``examples`` with the component's own optimizer (``sgd`` is
        ignored: the weights are torch's). Prefer ``python -m spacy_kbnlp train``."""
        from ..training.loop import update_once

        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "Seq2SeqCoref.update")
        items = self.training_items(examples)
        if not items:
            return losses
        module = self.torch_module
        module.train()
        loss = self.training_loss(items)
        self._optimizer = update_once(module, loss, self._optimizer)
        module.eval()
        losses[self.name] += float(loss.detach())
        return losses

    # --- serialization
    def before_save(self) -> None:
        self._require_model()

    def serializers(self) -> Dict[str, Callable[[Path], None]]:
        return {"model": lambda p: self.coref_model.save(p), "linker": self._save_linker}

    def deserializers(self) -> Dict[str, Callable[[Path], None]]:
        return {"model": self._load_model, "linker": self._load_linker}

    def _save_linker(self, p: Path) -> None:
        linker = self.pair_linker() or self.linker
        if linker is not None:
            linker.to_disk(p)

    def _load_linker(self, p: Path) -> None:
        """A pipeline saved before the linker existed has none: ``relink`` then uses
        the bundled one for the bundled model, and keeps the generated clusters
        otherwise."""
        self.linker = PairLinker.from_disk(p) if (p / SPEC_FILE).exists() else None

    def _load_model(self, p: Path) -> None:
        if not Seq2SeqCorefModel.is_saved_model(p):
            raise ValueError(Errors.KBE260.format(name=self.name, path=p))
        self.coref_model = Seq2SeqCorefModel.from_dir(p, self.settings, device=self.device)


class SegmentProgress:
    """``progress(done, total)`` callback of ``predict_docs``: a progress bar of
    segments on stderr when ``show``, and the KBW255 warning with the expected time
    (from the first batch's speed) when a doc is over ``warn_tokens`` tokens."""

    def __init__(self, name: str, docs: List[Doc], *, show: bool, warn_tokens: int,
                 segments: Callable[[Doc], int]):
        self.name = name
        self.long = [d for d in docs if warn_tokens and len(d) > warn_tokens]
        self.segments = segments
        self.show = show
        self.bar = None
        self.started = time.perf_counter()
        self.warned = False

    def __call__(self, done: int, total: int) -> None:
        if self.show and self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.name, unit="segment", leave=False)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.refresh()  # a batch takes seconds: show every one
        if self.long and not self.warned:
            self.warned = True
            rate = (time.perf_counter() - self.started) / max(1, done)
            for doc in self.long:
                n = self.segments(doc)
                warnings.warn(Warnings.KBW255.format(name=self.name, tokens=len(doc), segments=n,
                                                     rate=rate, eta=rate * n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def describe_clusters(doc: Doc, max_mentions: int = 8) -> List[Tuple[int, str]]:
    """``[(cluster number, "mention | mention | ...")]`` of a doc's clusters, for
    printing (the README demo shows these next to the linked entities)."""
    from ..extensions import get_coref_clusters

    out = []
    for n, cluster in enumerate(get_coref_clusters(doc), start=1):
        texts = [" ".join(m.text.split()) for m in cluster[:max_mentions]]
        more = f" (+{len(cluster) - max_mentions})" if len(cluster) > max_mentions else ""
        out.append((n, " | ".join(texts) + more))
    return out
