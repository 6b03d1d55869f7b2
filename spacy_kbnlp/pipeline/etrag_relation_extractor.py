"""``etrag_relation_extractor``: relation classification between given entities with
ETRAG soft prompts (``spacy_kbnlp.ETRAG.v1``), trainable with ``spacy train``.

Why a thinc ``PyTorchWrapper`` (STYLE.md §1.6): the network trains through
``nlp.update``, so thinc's optimizer, parameter averaging and device placement apply;
the relation label is scored, not freely generated, so no decoding loop lives in
the component. The wrapper saves the torch weights as safetensors
(``core.torch_io.save_state``); the instance bank and the backbone's config and
tokenizer are written next to it, so ``from_disk`` needs no hub and no weights path.

Instances are the unordered pairs of the entity spans (``doc.spans[spans_key]``, which
may hold overlapping entities, else ``doc.ents``; training adds the gold relation
arguments; see ``retrieval.render.entity_spans``): training and prediction pair the
same spans. The
predicted directed label becomes one record in ``doc._.rel_records`` (read through
``doc._.kb_rels`` / ``doc._.relations``) with its probability (softmax over the label
log-likelihoods); ``no_relation`` and probabilities below ``threshold`` write
nothing. Docs with fewer than two entities get no relation. During training the
instance bank holds every training instance; a query never retrieves instances of
its own sentence (leave-one-out by ``doc_key``).

Training loss (per instance, averaged): ``-log softmax(S)[gold] + token_loss_weight *
(-S[gold] / n_tokens(gold))`` where ``S`` are the summed label log-likelihoods that
prediction also ranks (``_Etrag.label_scores``; with ``label_scoring = "head"``, the
default, the log-probabilities of the labels from one decoder step, and the token term
the gold verbalisation's log-likelihood under teacher forcing, one decoder sequence per
instance whatever the number of labels): the sequence-level cross-entropy
pushes the other labels down (a token-level NLL alone learns the deterministic tokens
of the verbalisations and leaves the decisive first token nearly untrained); the
token term keeps "generate the label". No class reweighting (ETRAG uses the plain
generation objective; the softmax over all labels already calibrates the frequent
``Other``/``no_relation``). ``fresh_lr_scale`` multiplies the learning rate of the
parameters that start untrained (``_Etrag.fresh_parameters``: label embeddings,
value projection, cross-attention of a warm-started decoder) in ``finish_update``.
"""
import contextlib
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
import srsly
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import ensure_path, registry
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.util import to_numpy

from ..core.device import current_device, place_thinc
from ..core.integrity import check_manifest, write_manifest
from ..errors import Errors
from ..extensions import ENTITIES_KEY, install_extensions
from ..models.etrag import attach_module, backbone_config, build_etrag_module, torch_module
from ..retrieval.render import NO_RELATION, doc_key, pair_instances, relation_from_instance

DEFAULT_ETRAG_MODEL = """
[model]
@architectures = "spacy_kbnlp.ETRAG.v1"
backbone = null
n_neighbors = 4
n_candidates = 32
temperature = 0.1
prompt_length = 1
decoder_layers = 2
max_length = 128
label_vocab_only = true
label_scoring = "sequence"
pooling = "text"
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_ETRAG_MODEL)["model"]
SCORE_WEIGHTS = {"rel_micro_f": 1.0, "rel_micro_p": None, "rel_micro_r": None}


@Language.factory(
    "etrag_relation_extractor",
    assigns=["doc._.rel_records"],
    requires=["doc.ents"],
    default_config={"model": DEFAULT_MODEL, "threshold": 0.0, "refresh_every": 200,
                    "batch_size": 16, "overwrite": True, "token_loss_weight": 0.5,
                    "fresh_lr_scale": 10.0, "spans_key": ENTITIES_KEY,
                    "negative_ratio": 1.0, "retrieval_mix": 0.0, "knn_mix": 0.0,
                    "knn_k": 0, "knn_temperature": 0.05, "warm_lr_scale": 1.0,
                    "scorer": {"@scorers": "spacy_kbnlp.rel_scorer.v1"}},
    default_score_weights=SCORE_WEIGHTS,
)
def make_etrag_relation_extractor(nlp: Language, name: str, model: Model, threshold: float,
                                  refresh_every: int, batch_size: int, overwrite: bool,
                                  token_loss_weight: float, fresh_lr_scale: float,
                                  spans_key: Optional[str], negative_ratio: float,
                                  retrieval_mix: float, knn_mix: float, knn_k: int,
                                  knn_temperature: float, warm_lr_scale: float,
                                  scorer: Optional[Callable]) -> "EtragRelationExtractor":
    return EtragRelationExtractor(nlp.vocab, model, name, threshold=threshold,
                                  refresh_every=refresh_every, batch_size=batch_size,
                                  overwrite=overwrite, token_loss_weight=token_loss_weight,
                                  fresh_lr_scale=fresh_lr_scale, spans_key=spans_key,
                                  negative_ratio=negative_ratio, retrieval_mix=retrieval_mix,
                                  knn_mix=knn_mix, knn_k=knn_k, knn_temperature=knn_temperature,
                                  warm_lr_scale=warm_lr_scale, scorer=scorer)


@registry.augmenters("spacy_kbnlp.gold_entities_augmenter.v1")
def create_gold_entities_augmenter(spans_key: Optional[str] = ENTITIES_KEY
                                   ) -> Callable[[Language, Example], Iterator[Example]]:
    """Copy the gold entities into the predicted Doc (given-entity relation
    classification), e.g. ``augmenter`` of ``spacy.Corpus.v1`` for train and dev:
    ``doc.ents`` and the span group ``spans_key`` (every entity, overlapping ones
    included), when the gold Doc has one."""
    def augment(nlp: Language, example: Example) -> Iterator[Example]:
        return gold_entities_augmenter(nlp, example, spans_key=spans_key)

    return augment


def gold_entities_augmenter(nlp: Language, example: Example, *,
                            spans_key: Optional[str] = ENTITIES_KEY) -> Iterator[Example]:
    from spacy.util import filter_spans

    pred = example.predicted.copy()

    def aligned(spans: Iterable) -> List:
        out = []
        for ent in spans:
            span = pred.char_span(ent.start_char, ent.end_char, label=ent.label_,
                                  alignment_mode="expand")
            if span is not None:
                out.append(span)
        return out

    pred.ents = filter_spans(aligned(example.reference.ents))
    group = example.reference.spans.get(spans_key) if spans_key else None
    if group:
        pred.spans[spans_key] = aligned(group)
    yield Example(pred, example.reference)


@registry.schedules("spacy_kbnlp.warmup_linear_ratio.v1")
def warmup_linear_ratio(initial_rate: float, total_steps: int, warmup_ratio: float = 0.1):
    """thinc's ``warmup_linear`` with the warmup given as a share of ``total_steps``
    (``floor(warmup_ratio * total_steps)``, at least 1 step): the benchmark recipe of
    ``benchmarks/re.py`` (10 % warmup, then linear decay to 0 at ``total_steps``) as
    one schedule for ``configs/etrag.cfg``."""
    from thinc.api import warmup_linear

    if not (0 <= warmup_ratio < 1 and total_steps >= 1):
        raise ValueError(Errors.KBE312.format(value=(warmup_ratio, total_steps),
                                              setting="warmup_ratio, total_steps",
                                              why="need 0 <= warmup_ratio < 1 and total_steps >= 1"))
    warmup = max(1, int(total_steps * warmup_ratio + 1e-9))
    return warmup_linear(initial_rate, warmup, total_steps)


Instance = Dict[str, Any]


class EtragRelationExtractor(TrainablePipe):
    #: keys of ``cfg`` that are derived state (saved and restored); the others are
    #: settings, which come from the config
    DERIVED = ("labels", "format_version")

    def __init__(self, vocab: Vocab, model: Model, name: str, *, threshold: float,
                 refresh_every: int, batch_size: int, overwrite: bool,
                 token_loss_weight: float, fresh_lr_scale: float,
                 spans_key: Optional[str], negative_ratio: float, retrieval_mix: float,
                 knn_mix: float, knn_k: int, knn_temperature: float, warm_lr_scale: float,
                 scorer: Optional[Callable]):
        """Settings as in the factory's ``default_config`` (their one definition)."""
        for setting, value in (("token_loss_weight", token_loss_weight),
                               ("fresh_lr_scale", fresh_lr_scale),
                               ("negative_ratio", negative_ratio),
                               ("warm_lr_scale", warm_lr_scale),
                               ("knn_k", knn_k)):
            if not value >= 0:
                raise ValueError(Errors.KBE312.format(value=value, setting=setting,
                                                      why="must be >= 0"))
        for setting, value, what in (("retrieval_mix", retrieval_mix, "the scores without neighbours"),
                                     ("knn_mix", knn_mix, "the neighbours' label vote")):
            if not 0 <= value <= 1:
                raise ValueError(Errors.KBE312.format(
                    value=value, setting=setting, why=f"the weight of {what}, a number in [0, 1]"))
        if not knn_temperature > 0:
            raise ValueError(Errors.KBE312.format(value=knn_temperature, setting="knn_temperature",
                                                  why="the vote's softmax temperature, a number > 0"))
        install_extensions()
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {"labels": [], "threshold": float(threshold),
                                    "refresh_every": int(refresh_every),
                                    "batch_size": int(batch_size), "overwrite": overwrite,
                                    "token_loss_weight": float(token_loss_weight),
                                    "fresh_lr_scale": float(fresh_lr_scale),
                                    "spans_key": spans_key,
                                    "negative_ratio": float(negative_ratio),
                                    "retrieval_mix": float(retrieval_mix),
                                    "knn_mix": float(knn_mix), "knn_k": int(knn_k),
                                    "knn_temperature": float(knn_temperature),
                                    "warm_lr_scale": float(warm_lr_scale),
                                    "format_version": 1}
        self._bank: List[Tuple[str, int, str]] = []  # (text, label row, doc key)
        self._stale = False
        self._bank_pooling = "text"  # the pooling the bank keys were made with (saved with them)
        self._n_updates = 0
        self._neg_rng = numpy.random.default_rng(0)  # negative sampling (update)

    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def module(self):
        return torch_module(self.model)

    def place(self) -> None:
        """Run the network on the current device (:mod:`..core.device`)."""
        module = self.module
        if module is not None:
            place_thinc(self.model, module, current_device(self.model.attrs.get("device")))

    # --- instances
    def instances(self, doc: Doc, gold: bool) -> List[Instance]:
        """The pair instances of ``doc`` (``gold``: with their labels, from the
        reference Doc); both pair the spans of ``spans_key`` (else ``doc.ents``)."""
        insts = pair_instances(doc, with_labels=gold, spans_key=self.cfg["spans_key"])
        key = doc_key(doc)
        for inst in insts:
            inst["key"] = key
        return insts

    def _gold_instances(self, examples: Iterable[Example]) -> List[Instance]:
        return [inst for eg in examples for inst in self.instances(eg.reference, gold=True)]

    # --- set-up
    def initialize(self, get_examples: Callable[[], Iterable[Example]], *,
                   nlp: Optional[Language] = None, labels: Optional[List[str]] = None,
                   init_from: Optional[str] = None) -> None:
        """Labels from the examples (or ``labels``), the network, the instance bank.
        ``init_from`` (``[initialize.components.<name>]``): a saved pipeline folder whose
        ``etrag_relation_extractor`` weights this one starts from (two-stage training:
        the no-retrieval baseline, then ETRAG from its weights); its label set (and
        order) is kept, and only the parameters it never trained (with ``n_neighbors =
        0``: the label embeddings and the value projection) count as fresh for
        ``fresh_lr_scale``; those it copies step with ``warm_lr_scale`` x the learning
        rate, and with ``warm_lr_scale = 0`` they are frozen (no gradient is computed
        for them): the retrieval path (label embeddings, value projection) learns on
        top of the source's backbone, and with the prompts hidden the model stays
        the source."""
        validate_get_examples(get_examples, "EtragRelationExtractor.initialize")
        insts = self._gold_instances(get_examples())
        if not insts:
            raise ValueError(Errors.KBE313.format(name=self.name))
        found = sorted({i["label"] for i in insts} | {NO_RELATION})
        source = self._warm_start_source(init_from) if init_from else None
        if source is not None:
            missing = sorted((set(found) | set(labels or ())) - set(source.labels))
            if missing:
                raise ValueError(Errors.KBE325.format(name=self.name, path=init_from,
                                                      saved=list(source.labels), missing=missing))
            self.cfg["labels"] = list(source.labels)
        else:
            self.cfg["labels"] = list(labels) if labels else found
        if NO_RELATION not in self.cfg["labels"]:
            self.cfg["labels"].append(NO_RELATION)
        self.model.attrs["labels"] = list(self.cfg["labels"])
        self.model.initialize()
        if source is not None:
            self._load_weights(source, init_from)
            if self.cfg["warm_lr_scale"] == 0:
                for name, param in self.module.named_parameters():
                    if name in self.module.warm_parameters:
                        param.requires_grad_(False)
        self.set_bank(insts)

    def _warm_start_source(self, path: str) -> "EtragRelationExtractor":
        """The trained ``etrag_relation_extractor`` of the pipeline saved at ``path``."""
        from ..cli.evaluate import load_pipeline

        if not (Path(path) / "config.cfg").is_file():
            raise ValueError(Errors.KBE323.format(name=self.name, path=path,
                                                  why="no config.cfg in that folder"))
        found = [p for _, p in load_pipeline(path).pipeline if isinstance(p, EtragRelationExtractor)]
        if not found or found[0].module is None:
            raise ValueError(Errors.KBE323.format(name=self.name, path=path,
                                                  why="it has no trained etrag_relation_extractor"))
        return found[0]

    def _load_weights(self, source: "EtragRelationExtractor", path: str) -> None:
        """Copy ``source``'s torch weights into this (just built) module; a different
        shape, parameter set or tokenizer raises KBE324."""
        module, saved = self.module, source.module
        if len(module.tokenizer) != len(saved.tokenizer):
            raise ValueError(Errors.KBE324.format(name=self.name, path=path, why=(
                f"tokenizer of {len(saved.tokenizer)} entries, this one {len(module.tokenizer)}")))
        state = saved.state_dict()
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            why = " ".join(str(err).split())
            raise ValueError(Errors.KBE324.format(name=self.name, path=path,
                                                  why=why[:400] + ("..." if len(why) > 400 else ""))) from None
        untrained = ("label_emb.", "value.") if saved.n_neighbors == 0 else ()
        module.warm_parameters = {n for n in state if not n.startswith(untrained)}

    def set_bank(self, insts: Sequence[Instance]) -> None:
        """Use gold ``insts`` as the retrievable training instances and embed them."""
        index = {l: i for i, l in enumerate(self.labels)}
        self._bank = [(i["text"], index.get(i["label"], index[NO_RELATION]), i["key"])
                      for i in insts]
        self.refresh_bank()

    def refresh_bank(self) -> None:
        """Re-embed the bank with the current encoder (no gradient)."""
        module = self.module
        if module is None or module.n_neighbors == 0:
            self._stale = False
            return
        with self._evaluating():
            keys = module.embed_texts([b[0] for b in self._bank])
        module.set_bank(keys, [b[1] for b in self._bank], [b[2] for b in self._bank])
        self._bank_pooling = module.pooling
        self._stale = False

    # --- prediction
    def predict(self, docs: Iterable[Doc]) -> List[Tuple[List[Instance], numpy.ndarray]]:
        docs = list(docs)
        if not self.model.layers:
            raise ValueError(Errors.KBE304.format(name=self.name))
        self.place()
        self._fresh_bank()
        per_doc = [self.instances(doc, gold=False) for doc in docs]
        flat = [inst for insts in per_doc for inst in insts]
        mix, knn = self.cfg["retrieval_mix"], self.cfg["knn_mix"]
        vote = bool(knn) and self.module.n_neighbors > 0 and len(flat) > 0
        queries = None
        if not mix or self.module.n_neighbors == 0:
            scores = self.score_instances(flat)
        else:  # the pass with the prompts hidden also embeds the queries of the vote
            without, queries = self.scores_without_prompts(flat) if vote else (
                self.score_instances(flat, no_prompts=True), None)
            scores = mix_scores(None if mix == 1 else self.score_instances(flat), without, mix)
        if vote:
            scores = knn_mix_scores(scores, self.neighbour_votes(flat, queries=queries), knn)
        out, pos = [], 0
        for insts in per_doc:
            out.append((insts, scores[pos: pos + len(insts)]))
            pos += len(insts)
        return out

    def score_instances(self, insts: Sequence[Instance], *, no_prompts: bool = False) -> numpy.ndarray:
        """The label scores ``(n, L)`` of ``insts`` (the model's output, ``batch_size``
        instances a pass); ``no_prompts``: every instance without its neighbours."""
        extra = (None, None, True) if no_prompts else ()
        self._fresh_bank()
        return self._in_batches(insts, lambda chunk, rows: to_numpy(self.model.predict(
            ([i["text"] for i in chunk], [i["key"] for i in chunk]) + extra)))

    def scores_without_prompts(self, insts: Sequence[Instance]) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """``score_instances(insts, no_prompts=True)`` and, from the same encoder pass, the
        vote's queries (:meth:`vote_queries`; the module's ``scores_without_prompts``)."""
        self._fresh_bank()
        queries = numpy.zeros((len(insts), self.module.d_model), dtype="float32")

        def run(chunk, rows):
            scores, q = self.module.scores_without_prompts([i["text"] for i in chunk], [i["key"] for i in chunk])
            queries[rows] = q.cpu().numpy()
            return scores.cpu().numpy()

        with self._evaluating():
            return self._in_batches(insts, run), queries

    def _in_batches(self, insts: Sequence[Instance], run: Callable, width: Optional[int] = None) -> numpy.ndarray:
        """``run(chunk, rows)`` over ``insts`` (``rows``: the chunk's slice of ``insts``),
        ``batch_size`` instances a pass: one ``(n, width)`` float32 array (default width:
        the number of labels)."""
        out = numpy.zeros((len(insts), len(self.labels) if width is None else width), dtype="float32")
        bs = self.cfg["batch_size"]
        for b in range(0, len(insts), bs):
            rows = slice(b, min(b + bs, len(insts)))
            out[rows] = run(insts[rows], rows)
        return out

    def _fresh_bank(self) -> None:
        """Re-embed the bank before a retrieval if its keys are stale (trained encoder,
        another pooling, a loaded baseline given neighbours)."""
        if self._stale:
            self.refresh_bank()

    @contextlib.contextmanager
    def _evaluating(self):
        """The torch module in eval mode (no dropout) while the block runs."""
        module = self.module
        was_training = module.training
        module.eval()
        try:
            yield module
        finally:
            module.train(was_training)

    def vote_queries(self, insts: Sequence[Instance]) -> numpy.ndarray:
        """The retrieval embeddings of ``insts`` ``(n, d)``, once for several
        :meth:`neighbour_votes` settings (``queries``)."""
        with self._evaluating() as module:
            return self._in_batches(
                insts, lambda chunk, rows: module.vote_queries([i["text"] for i in chunk]).cpu().numpy(),
                width=module.d_model)

    def neighbour_votes(self, insts: Sequence[Instance], *, queries=None, knn_k: Optional[int] = None,
                        knn_temperature: Optional[float] = None) -> numpy.ndarray:
        """The label distribution ``(n, L)`` of each instance's retrieved neighbours (the
        module's ``neighbour_votes``: with ``knn_k`` 0 the soft neighbours of the soft
        prompts voting with their weights, else the ``knn_k`` nearest bank rows with
        weights ``softmax(similarity / knn_temperature)``; both default to the
        component's settings), ``batch_size`` instances a pass; ``queries``: their
        retrieval embeddings from :meth:`vote_queries` (or :meth:`scores_without_prompts`)."""
        import torch

        module = self.module
        self._fresh_bank()
        if module.n_neighbors == 0 or module.bank_keys.shape[0] == 0:
            return numpy.zeros((len(insts), len(self.labels)), dtype="float32")
        k = self.cfg["knn_k"] if knn_k is None else int(knn_k)
        temperature = self.cfg["knn_temperature"] if knn_temperature is None else float(knn_temperature)

        def run(chunk, rows):
            q = None if queries is None else torch.as_tensor(numpy.asarray(queries)[rows])
            return module.neighbour_votes([i["text"] for i in chunk], [i["key"] for i in chunk], k=k,
                                          temperature=temperature, queries=q).cpu().numpy()

        with self._evaluating():
            return self._in_batches(insts, run)

    def set_annotations(self, docs: Iterable[Doc], preds) -> None:
        for doc, (insts, scores) in zip(docs, preds):
            if not self.cfg["overwrite"] and doc._.rel_records:
                continue
            records = []
            if len(insts):
                probs = numpy.exp(scores - scores.max(1, keepdims=True))
                probs /= probs.sum(1, keepdims=True)
                for inst, p in zip(insts, probs):
                    j = int(p.argmax())
                    rec = relation_from_instance(inst, self.labels[j])
                    if rec is not None and p[j] >= self.cfg["threshold"]:
                        rec["score"] = round(float(p[j]), 6)
                        records.append(rec)
            doc._.rel_records = records

    # --- training
    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd=None,
               losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "EtragRelationExtractor.update")
        insts = self.sample_negatives(self._gold_instances(examples))
        if not insts:
            return losses
        if self._stale and self._n_updates % max(1, self.cfg["refresh_every"]) == 0:
            self.refresh_bank()
        module = self.module
        with_gold = module.label_scoring == "head" and self.cfg["token_loss_weight"] > 0
        scores, backprop = self.model.begin_update((
            [i["text"] for i in insts], [i["key"] for i in insts], None,
            self._gold_rows(insts) if with_gold else None))
        loss, d_scores = self.get_loss(insts, scores)
        backprop(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        self._n_updates += 1
        self._stale = True
        return losses

    def sample_negatives(self, insts: List[Instance]) -> List[Instance]:
        """Training instances of one update with at most ``negative_ratio`` x (number
        of relation instances, at least 1) ``no_relation`` instances, drawn at random
        (all of them when ``negative_ratio`` is 0): entity pairs without a relation
        are most pairs of a sentence with several entities (CoNLL04: 79 %), and with
        all of them in the loss the model learned ``no_relation`` for every pair. The
        default, 1, changes nothing where no batch has more ``no_relation`` than
        relation instances (SemEval: one related pair per sentence)."""
        ratio = self.cfg["negative_ratio"]
        if not ratio:
            return insts
        neg = [i for i, inst in enumerate(insts) if inst["label"] == NO_RELATION]
        keep_n = int(round(ratio * max(1, len(insts) - len(neg))))
        if len(neg) <= keep_n:
            return insts
        drop = set(self._neg_rng.choice(neg, size=len(neg) - keep_n, replace=False).tolist())
        return [inst for i, inst in enumerate(insts) if i not in drop]

    def _gold_rows(self, insts: Sequence[Instance]) -> List[int]:
        index = {l: i for i, l in enumerate(self.labels)}
        return [index.get(i["label"], index[NO_RELATION]) for i in insts]

    def get_loss(self, insts: Sequence[Instance], scores) -> Tuple[float, Any]:
        """Cross-entropy of the gold label over the softmax of the label scores plus
        ``token_loss_weight`` x the gold label's per-token NLL, averaged over
        instances (see the module doc). ``scores``: every label's score ``(n, L)``
        (``sequence``: the summed token log-likelihoods, the gold one among them) or
        ``(n, L + 1)`` (``head``: the label log-probabilities and, last, the gold
        verbalisation's summed token log-likelihood); returns the loss and its
        gradient (same shape)."""
        gold = numpy.array(self._gold_rows(insts))
        n = len(insts)
        rows = numpy.arange(n)
        n_labels = len(self.labels)
        n_tok = (self.module.label_ids != -100).sum(-1).cpu().numpy().astype("float32")[gold]
        s = self.model.ops.to_numpy(scores).astype("float32")
        log_p = log_softmax(s[:, :n_labels])
        w = self.cfg["token_loss_weight"]
        tok_col = gold if s.shape[1] == n_labels else numpy.full(n, n_labels)
        if s.shape[1] == n_labels and self.module.label_scoring == "head":
            w = 0.0  # prediction-shaped scores: no gold verbalisation to score
        loss = float(-log_p[rows, gold].mean() + w * (-s[rows, tok_col] / n_tok).mean())
        d = numpy.zeros_like(s)
        d[:, :n_labels] = numpy.exp(log_p)
        d[rows, gold] -= 1.0
        d[rows, tok_col] -= w / n_tok
        return loss, self.model.ops.xp.asarray((d / n).astype("float32"))

    def finish_update(self, sgd) -> None:
        """Thinc's optimizer step, with ``fresh_lr_scale`` as the ``lr_scale`` of the
        untrained parameters and ``warm_lr_scale`` as that of the parameters copied by
        ``init_from`` (keyed by the torch shim's id and the parameter name, as thinc's
        PyTorchShim steps them; frozen parameters have no gradient and are skipped)."""
        module = self.module
        fresh_scale, warm_scale = self.cfg["fresh_lr_scale"], self.cfg["warm_lr_scale"]
        if module is None or (fresh_scale == 1.0 and (warm_scale == 1.0 or not module.warm_parameters)):
            self.model.finish_update(sgd)
            return
        shim = self.model.layers[0].shims[0]
        scales = {(shim.id, name): warm_scale for name in module.warm_parameters}
        scales.update({(shim.id, name): fresh_scale for name in module.fresh_parameters()})
        self.model.finish_update(ScaledLR(sgd, scales))

    # --- serialization
    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        import safetensors.numpy

        path = ensure_path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "cfg", {key: self.cfg[key] for key in self.DERIVED})
        module = self.module
        if module is None:
            return
        self._fresh_bank()  # the keys saved are the ones predict would use
        (path / "backbone").mkdir(exist_ok=True)
        srsly.write_json(path / "backbone" / "config.json", backbone_config(module.seq2seq))
        module.tokenizer.save_pretrained(path / "backbone")
        with (path / "model").open("wb") as f:
            f.write(self.model.to_bytes())
        keys = module.bank_keys.detach().cpu().numpy().astype("float32")
        # the pooling the keys were made with: a pipeline loaded with another one re-embeds
        safetensors.numpy.save_file({"keys": keys}, str(path / "bank.safetensors"),
                                    metadata={"pooling": self._bank_pooling})
        srsly.write_jsonl(path / "bank.jsonl", [{"text": t, "label": l, "key": k}
                                                for t, l, k in self._bank])
        write_manifest(path)  # sha256 of model and bank.safetensors

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "EtragRelationExtractor":
        import safetensors

        path = ensure_path(path)
        saved = srsly.read_json(path / "cfg")
        self.cfg.update({key: saved[key] for key in self.DERIVED if key in saved})
        if not (path / "model").exists():
            return self
        check_manifest(path)
        self.model.attrs["labels"] = list(self.cfg["labels"])
        attrs = dict(self.model.attrs, backbone=str(path / "backbone"))
        if not self.model.layers:
            config = srsly.read_json(path / "backbone" / "config.json")
            attach_module(self.model, build_etrag_module(attrs, self.labels, from_config=config))
        self.model.from_bytes((path / "model").read_bytes())
        self._bank = [(r["text"], int(r["label"]), r["key"]) for r in srsly.read_jsonl(path / "bank.jsonl")]
        with safetensors.safe_open(str(path / "bank.safetensors"), framework="np") as f:
            keys, pooling = f.get_tensor("keys"), (f.metadata() or {}).get("pooling", "text")
        module = self.module
        if len(self._bank) and module.n_neighbors > 0:
            module.set_bank(keys, [b[1] for b in self._bank], [b[2] for b in self._bank])
        # keys made with another pooling (e.g. loaded with model.pooling overridden), or none
        # (a baseline, n_neighbors 0, loaded with n_neighbors overridden: it kept its training
        # instances, not their keys) are embedded before the first retrieval
        self._bank_pooling = pooling
        self._stale = module.n_neighbors > 0 and (pooling != module.pooling or keys.shape[0] != len(self._bank))
        return self


def log_softmax(scores: numpy.ndarray) -> numpy.ndarray:
    z = scores - scores.max(-1, keepdims=True)
    return z - numpy.log(numpy.exp(z).sum(-1, keepdims=True))


def mix_scores(with_neighbours: Optional[numpy.ndarray], without: numpy.ndarray, mix: float) -> numpy.ndarray:
    """The trust gate of ``retrieval_mix``: ``(1 - mix) * log_softmax(with_neighbours) +
    mix * log_softmax(without)`` (label log-probabilities with and without the soft
    prompts; ``with_neighbours`` may be None when ``mix`` is 1)."""
    out = float(mix) * log_softmax(without)
    if mix < 1:
        out = out + (1.0 - float(mix)) * log_softmax(with_neighbours)
    return out.astype("float32")


def knn_mix_scores(scores: numpy.ndarray, votes: numpy.ndarray, mix: float) -> numpy.ndarray:
    """The ``knn_mix`` term (the interpolation of kNN-LM, Khandelwal et al., 2020):
    label log-probabilities ``log((1 - mix) * softmax(scores) + mix * votes)``, where
    ``scores`` are the model's (after ``retrieval_mix``) and ``votes`` the retrieved
    neighbours' label distribution (``neighbour_votes``)."""
    p = (1.0 - float(mix)) * numpy.exp(log_softmax(scores)) + float(mix) * votes
    return numpy.log(numpy.maximum(p, 1e-12)).astype("float32")


class ScaledLR:
    """A thinc optimizer seen through ``lr_scale``: the parameter of each key in
    ``scales`` steps with that many times the learning rate; everything else
    (schedules, averages, settings) is the wrapped optimizer's."""

    def __init__(self, optimizer: Any, scales: Dict[Tuple[int, str], float]):
        self.optimizer = optimizer
        self.scales = {key: float(v) for key, v in scales.items()}

    def __call__(self, key: Tuple[int, str], weights: Any, gradient: Any, *,
                 lr_scale: float = 1.0) -> Any:
        return self.optimizer(key, weights, gradient, lr_scale=lr_scale * self.scales.get(key, 1.0))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)
