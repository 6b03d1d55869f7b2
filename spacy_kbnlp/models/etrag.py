"""ETRAG (Makino et al., 2024): end-to-end trainable retrieval-augmented relation
classification with soft prompts, as a torch module and a registered thinc model.

For a batch of relation instances (sentences with ``[E1 ..]``/``[E2 ..]`` marks):

1. the query embedding ``q`` is the mean-pooled, L2-normalised output of the
   seq2seq *encoder* on the instance (with gradients: this is the retrieval
   encoder, shared with the generator), over every token (``pooling = "text"``) or
   over the marked pair and the words between them (``"pair"``);
2. similarities ``q . k_j`` to the instance bank (keys = the same embedding of every
   training instance, refreshed every ``refresh_every`` updates, no gradient) give
   the ``n_candidates`` nearest instances, the query itself (and its duplicates)
   excluded during training;
3. a differentiable top-k (the continuous relaxation of Plötz & Roth's neural
   nearest neighbours, the Gumbel-free form ETRAG uses): ``w_1 = softmax(s / T)``,
   ``w_{t+1} = softmax(log w_t-logits + log(1 - w_t))``, for ``t < n_neighbors``;
4. each soft neighbour ``sum_j w_t[j] * v_j`` with value ``v_j = W [k_j ; e(label_j)]``
   (``e`` = trainable label embeddings) becomes ``prompt_length`` soft prompt
   vectors prepended to the encoder's input embeddings;
5. the decoder scores every label verbalisation (e.g. ``cause effect (e2,e1)``);
   the output is each label's summed token log-likelihood (``label_scores``), the
   same matrix in training and prediction. The component's loss (see
   ``etrag_relation_extractor``) is the cross-entropy of the gold label over the
   softmax of these sequence scores plus a weighted token-level NLL of the gold
   label (generation loss), so gradients reach the retrieval encoder through the
   weights ``w_t``. With ``label_vocab_only`` (default) the decoder's output
   softmax runs over the tokens of the label verbalisations only (generation
   constrained to the label vocabulary): the same decision, without the
   full-vocabulary output layer that dominates the cost of scoring every label on a CPU
   (MiniLM, 30,522 tokens: forward + backward of 16 SemEval instances x 19 labels took
   3.2 s with the full vocabulary and 1.1 s with the 25 label tokens, one CPU thread).

**Label scoring** (``label_scoring``). ``sequence`` (above; the architecture's default,
so saved pipelines keep it) decodes every label's verbalisation for every instance: B x L
decoder sequences, a training step costs about 3x more with 33 labels than with 3
(``benchmarks/re.py step-cost``). ``head`` (the component's and ``configs/etrag.cfg``'s
default) runs the decoder one step (the start token, cross-attending the encoder states
with the soft prompts) and scores all labels at once from that first state: the model's
own LM-head transform, then one output row per label (``label_head``, warm-started as the
mean output embedding of the label's tokens, a fresh parameter), log-softmax over the
labels. One pass whatever the number of labels; the label set is the same closed set as
with ``label_vocab_only`` (only the labels can be predicted), and each label counts as one
token in the component's token term.

**Neighbour label noise** (``neighbour_label_noise``, default 0). With leave-one-out
retrieval over the training bank, the top neighbour's label is right far more often in
training than on unseen text, and the generator learns to copy it (SemEval 10 %: the
prediction follows a wrong top neighbour on 63 % of the test instances where it is
wrong; ``benchmarks/README_re.md``). In training, each candidate's label in the soft
prompt is replaced with this probability by the label of a random bank row, so the
neighbours are as unreliable as they will be at prediction and the sentence itself has
to be read. Prediction is unchanged.

**Trust gate** (``retrieval_dropout``, default 0; the component's ``retrieval_mix``).
Trained on leave-one-out neighbours that are right more often than on unseen text, the
generator learns to copy the top neighbour's label. With ``retrieval_dropout = p``, each
training instance's soft prompts are hidden with probability ``p`` (attention mask 0 on
the prompt positions, in the encoder and in the decoder's cross-attention: one batch still
runs in one pass), so the same weights learn to classify with and without neighbours. At
prediction, ``etrag_relation_extractor``'s ``retrieval_mix = lambda`` ranks the labels by
``(1 - lambda) * log_softmax(scores with neighbours) + lambda * log_softmax(scores with the
prompts hidden)`` (one more pass, ``no_prompts``); 0 = the scores with neighbours only.

**Label vote** (the component's ``knn_mix``): ``neighbour_votes`` is the label distribution of
the same soft neighbours (each votes for its candidates' bank labels with its weights), or
with the component's ``knn_k > 0`` of the ``knn_k`` nearest bank rows (weights
``softmax(similarity / knn_temperature)``), interpolated with the model's label
probabilities at prediction (kNN-LM).

``n_neighbors=0`` gives the no-retrieval baseline with the same backbone.

Backbone: any Hugging Face seq2seq model directory (T5, BART, ...), or an encoder
(BERT-like; default: the bundled MiniLM) warm-started into an ``EncoderDecoderModel``
whose decoder keeps the first ``decoder_layers`` layers (cross-attention new).
"""
import contextlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spacy.util import registry
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v3

from ..core.torch_io import get_device, load_state, save_state
from ..encoders.hf import resolve_model_path
from ..errors import Errors
from ..retrieval.render import NO_RELATION, pair_region, undirected


LABEL_SCORING = ("sequence", "head")
POOLING = ("text", "pair")


def verbalize(label: str) -> str:
    """``Cause-Effect(e2,e1)`` -> ``cause effect (e2,e1)``; ``no_relation`` -> ``no relation``."""
    base, forward = undirected(label)
    text = base.replace("-", " ").replace("_", " ").lower()
    if label == NO_RELATION or base == label:
        return text
    return f"{text} {'(e1,e2)' if forward else '(e2,e1)'}"


def load_backbone(path: Optional[str], decoder_layers: int = 2, *, from_config: Optional[Dict] = None):
    """``(seq2seq model, tokenizer)`` from a local path (weights) or a saved config
    (architecture only, for ``from_disk``). A path to an encoder (BERT, MiniLM, ...)
    is warm-started into an encoder-decoder with ``decoder_layers`` decoder layers;
    loading is shared with the coreference and INSGENEL models
    (:mod:`spacy_kbnlp.models.seq2seq`)."""
    from transformers import (AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, EncoderDecoderConfig,
                              EncoderDecoderModel)

    from .hf_loading import _quiet_transformers, load_seq2seq, warm_start_encoder_decoder

    src = resolve_model_path(path)
    if from_config is not None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(Errors.KBE252.format(path=src, err=err)) from err
        if from_config.get("model_type") == "encoder-decoder":
            model = EncoderDecoderModel(config=EncoderDecoderConfig.from_dict(from_config))
        else:
            model = AutoModelForSeq2SeqLM.from_config(AutoConfig.for_model(**from_config))
        return model, tokenizer
    try:
        config = AutoConfig.from_pretrained(src, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(Errors.KBE252.format(path=src, err=err)) from err
    if getattr(config, "is_encoder_decoder", False):
        return load_seq2seq(src)
    with _quiet_transformers():  # "cross-attention newly initialized" is expected
        return warm_start_encoder_decoder(src, decoder_layers=int(decoder_layers))


def backbone_config(model) -> Dict[str, Any]:
    return model.config.to_dict()


def _build_module_class():
    import torch
    from torch import nn

    class _Etrag(nn.Module):
        def __init__(self, seq2seq, tokenizer, labels: Sequence[str], *, n_neighbors: int = 4,
                     n_candidates: int = 32, temperature: float = 0.1, prompt_length: int = 1,
                     max_length: int = 128, label_vocab_only: bool = True,
                     label_scoring: str = "sequence", neighbour_label_noise: float = 0.0,
                     retrieval_dropout: float = 0.0, pooling: str = "text"):
            super().__init__()
            self.seq2seq = seq2seq
            self.tokenizer = tokenizer
            self.labels = list(labels)
            self.n_neighbors = int(n_neighbors)
            self.n_candidates = int(n_candidates)
            self.temperature = float(temperature)
            self.prompt_length = int(prompt_length)
            self.max_length = int(max_length)
            self.neighbour_label_noise = float(neighbour_label_noise)
            self.retrieval_dropout = float(retrieval_dropout)
            self.pooling = str(pooling)
            if self.pooling == "pair" and not getattr(tokenizer, "is_fast", False):
                raise ValueError(Errors.KBE312.format(
                    value=pooling, setting="pooling",
                    why="'pair' needs a fast tokenizer (character offsets); use 'text'"))
            emb = seq2seq.get_input_embeddings()
            d = emb.weight.shape[1]
            self.d_model = d
            # label verbalisations -> token ids (+ eos), padded with -100
            eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
            seqs = [tokenizer(verbalize(l), add_special_tokens=False)["input_ids"] + [eos]
                    for l in self.labels]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), -100, dtype=torch.long)
            for i, s in enumerate(seqs):
                ids[i, :len(s)] = torch.tensor(s)
            self.register_buffer("label_ids", ids, persistent=False)
            # the output layer restricted to the label tokens: their ids, and the targets
            # as positions in that list (a model adding a bias of vocabulary size after
            # its output embeddings, e.g. BART's final_logits_bias, keeps the full vocabulary)
            vocab = sorted({t for s in seqs for t in s})
            self.register_buffer("vocab_ids", torch.tensor(vocab, dtype=torch.long), persistent=False)
            local = {t: i for i, t in enumerate(vocab)}
            self.register_buffer("label_local_ids", ids.clone().apply_(
                lambda t: local.get(t, -100)), persistent=False)
            self.label_vocab_only = bool(label_vocab_only) and not hasattr(seq2seq, "final_logits_bias") \
                and seq2seq.get_output_embeddings() is not None
            self.label_emb = nn.Embedding(len(self.labels), d)
            with torch.no_grad():  # warm start: mean word embedding of the verbalisation
                for i, s in enumerate(seqs):
                    self.label_emb.weight[i] = emb.weight[torch.tensor(s[:-1] or s)].mean(0)
            self.label_scoring = str(label_scoring)
            if self.label_scoring == "head":
                # one output row per label over the decoder's first state, warm-started
                # as the mean output embedding (and bias) of the label's tokens
                out_emb = seq2seq.get_output_embeddings()
                table = out_emb.weight if out_emb is not None else emb.weight
                bias = getattr(out_emb, "bias", None) if out_emb is not None else None
                rows = [torch.tensor(s[:-1] or s) for s in seqs]
                with torch.no_grad():
                    self.label_head = nn.Parameter(torch.stack([table[r].mean(0) for r in rows]).clone())
                    self.label_head_bias = nn.Parameter(
                        torch.stack([bias[r].mean() for r in rows]).clone() if bias is not None
                        else torch.zeros(len(rows)))
                self._head_swap = out_emb is not None and not hasattr(seq2seq, "final_logits_bias")
            self.value = nn.Linear(2 * d, self.prompt_length * d)
            # instance bank (no gradient); set with set_bank()
            self.register_buffer("bank_keys", torch.zeros((0, d)), persistent=False)
            self.register_buffer("bank_labels", torch.zeros((0,), dtype=torch.long), persistent=False)
            self.bank_instance_keys: List[str] = []
            self._rows_by_key: Dict[str, List[int]] = {}
            # names of the parameters copied from a trained model (the component's
            # init_from): not fresh, whatever their role
            self.warm_parameters: set = set()

        @property
        def device(self):
            return self.label_emb.weight.device

        def tokenize(self, texts: Sequence[str]):
            enc = self.tokenizer(list(texts), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

        def embed(self, ids, mask, pool=None):
            """Mean-pooled, L2-normalised encoder output (the retrieval embedding), over
            the tokens of ``pool`` (default: every token of ``mask``; see :meth:`pool_mask`)."""
            hidden = self.seq2seq.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            return self.pooled(hidden, mask if pool is None else pool)

        @staticmethod
        def pooled(hidden, pool):
            """The L2-normalised mean of ``hidden`` (B, T, d) over the tokens of ``pool`` (B, T)."""
            m = pool.unsqueeze(-1).to(hidden.dtype)
            return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)

        def pool_mask(self, texts: Sequence[str], mask):
            """The tokens the retrieval embedding averages (B, T), for ``tokenize(texts)``'s
            ``mask``: ``pooling = "text"``: all of them (special tokens included, as the
            first models did); ``"pair"``: the word pieces of the marked pair and the words
            between them (``pair_region``: ``[E1 ...] ... [E2 ...]``; all the text's word
            pieces when a text has no marks or the region was truncated away), so that
            instances are near when their entities and what links them are, not the rest
            of the sentence."""
            if self.pooling == "text":
                return mask
            enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                 return_offsets_mapping=True, return_tensors="pt")
            offsets = enc["offset_mapping"].to(mask.device)
            start, end = offsets[..., 0], offsets[..., 1]
            pieces = mask.bool() & (end > start)  # special tokens have empty offsets
            pool = pieces.clone()
            for b, text in enumerate(texts):
                region = pair_region(text)
                if region is not None:
                    inside = pieces[b] & (start[b] >= region[0]) & (end[b] <= region[1])
                    if bool(inside.any()):
                        pool[b] = inside
            return pool.to(mask.dtype)

        def embed_query(self, texts: Sequence[str], ids, mask):
            """The retrieval embedding of ``texts`` (tokenized as ``ids``, ``mask``)."""
            return self.embed(ids, mask, self.pool_mask(texts, mask))

        @torch.no_grad()
        def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> "torch.Tensor":
            out = []
            for b in range(0, len(texts), batch_size):
                chunk = list(texts[b: b + batch_size])
                ids, mask = self.tokenize(chunk)
                out.append(self.embed_query(chunk, ids, mask))
            return torch.cat(out) if out else torch.zeros((0, self.d_model), device=self.device)

        def set_bank(self, keys, labels: Sequence[int], instance_keys: Sequence[str]) -> None:
            self.bank_keys = torch.as_tensor(keys, dtype=torch.float32).to(self.device)
            self.bank_labels = torch.as_tensor(list(labels), dtype=torch.long).to(self.device)
            self.bank_instance_keys = list(instance_keys)
            self._rows_by_key = {}
            for i, k in enumerate(self.bank_instance_keys):
                self._rows_by_key.setdefault(k, []).append(i)

        def similarities(self, q, exclude: Sequence[Optional[str]]):
            """``q . k_j`` to every bank row (B, N), the rows of each query's own document
            (``exclude``: its key) at -inf (leave-one-out)."""
            sims = q @ self.bank_keys.T  # (B, N)
            for b, key in enumerate(exclude):
                rows = self._rows_by_key.get(key) if key else None
                if rows:
                    sims[b, rows] = float("-inf")
            return sims

        def neighbour_weights(self, q, exclude: Sequence[Optional[str]]):
            """``(weights (B, n_neighbors, C), candidate rows (B, C))``."""
            sims = self.similarities(q, exclude)
            c = min(self.n_candidates, sims.shape[1])
            cand_s, cand_idx = sims.topk(c, dim=1)
            logits = cand_s / self.temperature
            ws = []
            for _ in range(self.n_neighbors):
                w = torch.softmax(logits, dim=-1)
                ws.append(w)
                logits = logits + torch.log1p(-w.clamp(max=1 - 1e-6))
            return torch.stack(ws, 1), cand_idx

        @torch.no_grad()
        def vote_queries(self, texts: Sequence[str]):
            """The retrieval embeddings of ``texts`` (B, d), as :meth:`neighbour_votes` uses them."""
            ids, mask = self.tokenize(texts)
            return self.embed_query(texts, ids, mask)

        @torch.no_grad()
        def neighbour_votes(self, texts: Sequence[str], exclude: Sequence[Optional[str]], *,
                            k: int = 0, temperature: float = 0.05, queries=None):
            """The retrieved neighbours' label distribution ``(B, L)`` (rows sum to 1), the
            ``knn_mix`` term of ``etrag_relation_extractor``. ``k = 0``: each of the
            ``n_neighbors`` soft neighbours of the soft prompts (``neighbour_weights``)
            votes for the bank labels of its candidates with its weights, the mean over
            the neighbours; ``k > 0``: the ``k`` nearest bank rows vote with weights
            ``softmax(similarity / temperature)`` (kNN-LM). ``queries``: the texts'
            retrieval embeddings, if already computed (:meth:`vote_queries`)."""
            q = self.vote_queries(texts) if queries is None else queries.to(self.device)
            votes = torch.zeros((q.shape[0], len(self.labels)), device=self.device)
            if k > 0:
                sims = self.similarities(q, exclude)
                top, rows = sims.topk(min(int(k), sims.shape[1]), dim=1)
                votes.scatter_add_(1, self.bank_labels[rows], torch.softmax(top / float(temperature), -1))
                return votes
            weights, cand = self.neighbour_weights(q, exclude)
            votes.scatter_add_(1, self.bank_labels[cand], weights.sum(1))
            return votes / max(1, self.n_neighbors)

        def neighbour_labels(self, cand):
            """The bank labels of the candidate rows; in training, each replaced with
            probability ``neighbour_label_noise`` by the label of a random bank row
            (the label prior): retrieval at training time is more often right than on
            unseen text, and a generator trained on it copies the neighbours' labels."""
            labels = self.bank_labels[cand]
            if self.training and self.neighbour_label_noise > 0:
                flip = torch.rand(labels.shape, device=labels.device) < self.neighbour_label_noise
                drawn = self.bank_labels[torch.randint(0, self.bank_labels.shape[0], labels.shape,
                                                       device=labels.device)]
                labels = torch.where(flip, drawn, labels)
            return labels

        def soft_prompts(self, texts, ids, mask, exclude):
            q = self.embed_query(texts, ids, mask)
            weights, cand = self.neighbour_weights(q, exclude)
            values = self.value(torch.cat([self.bank_keys[cand], self.label_emb(self.neighbour_labels(cand))], -1))
            prompts = torch.einsum("bkc,bcv->bkv", weights, values)  # (B, k, m*d)
            return prompts.reshape(ids.shape[0], -1, self.d_model), weights, cand

        def hidden_prompts(self, batch: int, no_prompts: bool):
            """The instances whose soft prompts are hidden (bool (B,)) or None: all of them
            with ``no_prompts`` (the prediction pass without neighbours), in training each
            with probability ``retrieval_dropout``."""
            if no_prompts:
                return torch.ones(batch, dtype=torch.bool, device=self.device)
            if self.training and self.retrieval_dropout > 0:
                return torch.rand(batch, device=self.device) < self.retrieval_dropout
            return None

        def encode(self, texts: Sequence[str], exclude: Sequence[Optional[str]],
                   forced: Optional[Sequence[Sequence[int]]] = None, no_prompts: bool = False):
            """Encoder states with soft prompts. ``forced`` (rows per instance) replaces
            the learned retrieval by the given bank rows (uniform weights). Hidden prompts
            (``hidden_prompts``: ``no_prompts``, ``retrieval_dropout``) keep their
            positions with attention mask 0, in the encoder and in the decoder's
            cross-attention, so the instance is read without its neighbours in the same
            pass; when every prompt is hidden, retrieval is skipped (zero vectors)."""
            ids, mask = self.tokenize(texts)
            embeds = self.seq2seq.get_input_embeddings()(ids)
            use_bank = self.n_neighbors > 0 and self.bank_keys.shape[0] > 0
            hide = self.hidden_prompts(ids.shape[0], no_prompts) if use_bank else None
            if hide is not None and bool(hide.all()):
                prompts = embeds.new_zeros((ids.shape[0], self.n_neighbors * self.prompt_length, self.d_model))
            elif use_bank and forced is not None:
                rows = torch.as_tensor([list(r) for r in forced], dtype=torch.long, device=self.device)
                vals = self.value(torch.cat([self.bank_keys[rows], self.label_emb(self.bank_labels[rows])], -1))
                prompts = vals.reshape(ids.shape[0], -1, self.d_model)
            elif use_bank:
                prompts, _, _ = self.soft_prompts(texts, ids, mask, exclude)
            else:
                prompts = None
            extra = {}
            if prompts is not None:
                embeds = torch.cat([prompts.to(embeds.dtype), embeds], 1)
                shown = torch.ones(prompts.shape[:2], dtype=mask.dtype, device=mask.device)
                if hide is not None:
                    shown[hide] = 0
                    extra = self.hidden_positions(hide, prompts.shape[1], embeds.shape[1])
                mask = torch.cat([shown, mask], 1)
            enc = self.seq2seq.get_encoder()(inputs_embeds=embeds, attention_mask=mask, **extra)
            return enc.last_hidden_state, mask

        def hidden_positions(self, hide, n_prompts: int, width: int) -> Dict[str, Any]:
            """``position_ids`` for an encoder with absolute positions (BERT-like; none
            for T5 or BART, whose encoders take none): the text of an instance whose
            prompts are hidden starts at position 0, as without retrieval, so the
            prompts-hidden pass of a model warm-started from the no-retrieval baseline
            (``init_from``) is that baseline; shown prompts keep positions
            ``0..n_prompts-1`` and the text follows them."""
            if not self._encoder_takes_positions():
                return {}
            pos = torch.arange(width, device=hide.device).unsqueeze(0).repeat(hide.shape[0], 1)
            pos[hide] = (pos[hide] - n_prompts).clamp(min=0)
            return {"position_ids": pos}

        def _encoder_takes_positions(self) -> bool:
            """Whether the encoder's forward takes ``position_ids`` (looked up once)."""
            if getattr(self, "_takes_positions", None) is None:
                import inspect

                forward = self.seq2seq.get_encoder().forward
                self._takes_positions = "position_ids" in inspect.signature(forward).parameters
            return self._takes_positions

        def head_scores(self, hidden, mask):
            """``label_scoring = "head"``: one decoder step (the start token) over the
            encoder states; the first state's output through the model's LM-head
            transform and one row per label (``label_head``), log-softmax over the
            labels (B, L). One pass whatever the number of labels."""
            from transformers.modeling_outputs import BaseModelOutput

            B = hidden.shape[0]
            dec_in = self.decoder_inputs(torch.full((B, 1), -100, dtype=torch.long, device=hidden.device))
            head = self.seq2seq.get_output_embeddings() if self._head_swap else None
            if head is not None:
                head.forward = lambda x: torch.nn.functional.linear(x, self.label_head, self.label_head_bias)
            try:
                out = self.seq2seq(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                   attention_mask=mask, decoder_input_ids=dec_in,
                                   decoder_attention_mask=torch.ones_like(dec_in),
                                   output_hidden_states=head is None)
            finally:
                if head is not None:
                    del head.forward
            if head is not None:
                logits = out.logits[:, 0].float()
            else:
                state = out.decoder_hidden_states[-1][:, 0].float()
                logits = state @ self.label_head.T + self.label_head_bias
            return torch.log_softmax(logits, -1)

        def label_scores(self, hidden, mask, label_rows: Optional[Sequence[int]] = None):
            """Summed token log-likelihood of each label (B, L) (or of ``label_rows``);
            with ``label_scoring = "head"`` the log-probability of each label from
            :meth:`head_scores`."""
            if self.label_scoring == "head":
                scores = self.head_scores(hidden, mask)
                if label_rows is not None:
                    idx = torch.as_tensor(list(label_rows), device=scores.device).unsqueeze(-1)
                    scores = scores.gather(-1, idx)
                return scores, torch.ones_like(scores)
            return self.sequence_scores(hidden, mask, label_rows)

        def sequence_scores(self, hidden, mask, label_rows: Optional[Sequence[int]] = None):
            """Summed token log-likelihood of each label's verbalisation (B, L), or of
            ``label_rows`` (B, 1), and the token counts."""
            from transformers.modeling_outputs import BaseModelOutput

            B = hidden.shape[0]
            L = self.label_ids.shape[0] if label_rows is None else 1
            rows = slice(None) if label_rows is None else torch.as_tensor(label_rows)
            lab, lab_out = self.label_ids[rows], self.label_local_ids[rows]
            if not self.label_vocab_only:
                lab_out = lab
            if label_rows is None:
                hid = hidden.repeat_interleave(L, 0)
                msk = mask.repeat_interleave(L, 0)
                targets, out_targets = lab.repeat(B, 1), lab_out.repeat(B, 1)
            else:
                hid, msk, targets, out_targets = hidden, mask, lab, lab_out
            valid = targets != -100
            dec_in = self.decoder_inputs(targets)
            with self._label_output_layer():
                out = self.seq2seq(encoder_outputs=BaseModelOutput(last_hidden_state=hid),
                                   attention_mask=msk, decoder_input_ids=dec_in,
                                   decoder_attention_mask=torch.ones_like(dec_in))
            logits = out.logits.float()
            gold = logits.gather(-1, out_targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            tok = (gold - torch.logsumexp(logits, -1)) * valid
            return tok.sum(-1).reshape(B, L), valid.sum(-1).reshape(B, L)

        @contextlib.contextmanager
        def _label_output_layer(self):
            """With ``label_vocab_only``: the output embeddings compute the logits of the
            label tokens only (``vocab_ids``) while the block runs."""
            head = self.seq2seq.get_output_embeddings() if self.label_vocab_only else None
            if head is None:
                yield
                return
            vocab = self.vocab_ids

            def restricted(x):
                bias = getattr(head, "bias", None)
                return torch.nn.functional.linear(x, head.weight[vocab],
                                                  None if bias is None else bias[vocab])

            head.forward = restricted
            try:
                yield
            finally:
                del head.forward

        def decoder_inputs(self, targets):
            """Teacher forcing: the targets shifted right behind the start token."""
            cfg = self.seq2seq.config
            start = cfg.decoder_start_token_id
            if start is None:
                start = getattr(getattr(cfg, "decoder", None), "bos_token_id", None) or 0
            pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
            dec = torch.full_like(targets, pad)
            dec[:, 0] = start
            dec[:, 1:] = targets[:, :-1].masked_fill(targets[:, :-1] == -100, pad)
            return dec

        def fresh_parameters(self) -> List[str]:
            """Names of the parameters that start untrained: the label embeddings, the
            value projection and, in a warm-started encoder-decoder, the decoder's
            cross-attention and LM-head transform (the encoder checkpoint has none)."""
            warm = self.seq2seq.config.model_type == "encoder-decoder"
            trained = self.warm_parameters  # loaded from a trained pipeline (init_from)
            return [n for n, _ in self.named_parameters()
                    if n not in trained and (
                        n.startswith(("label_emb.", "value.", "label_head"))
                        or (warm and (".crossattention." in n or
                                      (n.startswith("seq2seq.decoder.cls.") and "decoder.weight" not in n))))]

        @torch.no_grad()
        def scores_without_prompts(self, texts: Sequence[str], exclude: Sequence[Optional[str]]):
            """The label scores of ``texts`` with every soft prompt hidden (``forward`` with
            ``no_prompts``) and, from the same encoder pass, their retrieval embeddings
            (:meth:`vote_queries`): with the prompts hidden, the text's encoder states are
            those of the text alone (its positions start at 0, the prompts are masked), so
            the vote needs no encoder pass of its own."""
            ids, mask = self.tokenize(texts)
            hidden, full_mask = self.encode(texts, exclude, no_prompts=True)
            scores, _ = self.label_scores(hidden, full_mask)
            text = hidden[:, hidden.shape[1] - ids.shape[1]:]
            return scores, self.pooled(text, self.pool_mask(texts, mask))

        def forward(self, texts: Sequence[str], exclude: Sequence[Optional[str]],
                    label_rows: Optional[Sequence[int]] = None,
                    gold_rows: Optional[Sequence[int]] = None, no_prompts: bool = False):
            """Summed log-likelihood of every label (B, L) (training and prediction),
            or of ``label_rows`` (B, 1) (teacher forcing of given labels only). With
            ``gold_rows`` and ``label_scoring = "head"`` (training): (B, L + 1), the
            label scores and, last, the summed token log-likelihood of each instance's
            gold verbalisation (teacher forcing, B decoder sequences: the generation
            loss, at a cost that does not grow with the number of labels). ``no_prompts``:
            every instance without its neighbours (prompts hidden; see :meth:`encode`)."""
            hidden, mask = self.encode(texts, exclude, no_prompts=no_prompts)
            scores, _ = self.label_scores(hidden, mask, label_rows=label_rows)
            if gold_rows is not None and self.label_scoring == "head":
                gold, _ = self.sequence_scores(hidden, mask, list(gold_rows))
                scores = torch.cat([scores, gold.to(scores.dtype)], -1)
            return scores

        def gold_loglik(self, texts, gold: Sequence[int], exclude, forced=None):
            """Average token log-likelihood of each instance's gold label (B,)."""
            hidden, mask = self.encode(texts, exclude, forced=forced)
            s, n = self.label_scores(hidden, mask, label_rows=list(gold))
            return (s / n.clamp(min=1)).squeeze(-1)

    return _Etrag


_MODULE_CLASS = None


def etrag_module_class():
    global _MODULE_CLASS
    if _MODULE_CLASS is None:
        _MODULE_CLASS = _build_module_class()
    return _MODULE_CLASS


def build_etrag_module(attrs: Dict[str, Any], labels: Sequence[str], *,
                       from_config: Optional[Dict] = None):
    seq2seq, tokenizer = load_backbone(attrs["backbone"], attrs["decoder_layers"],
                                       from_config=from_config)
    cls = etrag_module_class()
    module = cls(seq2seq, tokenizer, labels, n_neighbors=attrs["n_neighbors"],
                 n_candidates=attrs["n_candidates"], temperature=attrs["temperature"],
                 prompt_length=attrs["prompt_length"], max_length=attrs["max_length"],
                 label_vocab_only=attrs.get("label_vocab_only", True),
                 label_scoring=attrs.get("label_scoring", "sequence"),
                 neighbour_label_noise=attrs.get("neighbour_label_noise", 0.0),
                 retrieval_dropout=attrs.get("retrieval_dropout", 0.0),
                 pooling=attrs.get("pooling", "text"))
    return module.to(get_device(attrs.get("device")))


def _convert_inputs(model: Model, X: Tuple, is_train: bool):
    """``(texts, exclude_keys)``, ``(texts, exclude_keys, label rows)`` (score those
    labels only) or ``(texts, exclude_keys, None, gold rows)`` (training with
    ``label_scoring = "head"``: the gold verbalisations' log-likelihood as a last column);
    a fifth item ``True``: every instance without its neighbours (prompts hidden)."""
    texts, exclude = X[0], X[1]
    rows = list(X[2]) if len(X) > 2 and X[2] is not None else None
    gold = list(X[3]) if len(X) > 3 and X[3] is not None else None
    no_prompts = bool(X[4]) if len(X) > 4 else False
    return ArgsKwargs(args=(list(texts), list(exclude), rows, gold, no_prompts), kwargs={}), lambda d: X


def _etrag_forward(model: Model, X, is_train: bool):
    if not model.layers:
        raise ValueError(Errors.KBE304.format(name=model.name))
    return model.layers[0](X, is_train)


def _etrag_init(model: Model, X=None, Y=None) -> None:
    """Build the torch module once the labels are known (``model.attrs["labels"]``)."""
    if model.layers:
        return
    labels = model.attrs.get("labels")
    if not labels:
        raise ValueError(Errors.KBE313.format(name=model.name))
    attach_module(model, build_etrag_module(model.attrs, labels))


def attach_module(model: Model, module) -> None:
    wrapper = PyTorchWrapper_v3(module, convert_inputs=_convert_inputs,
                                serialize_model=save_state, deserialize_model=load_state)
    model._layers.append(wrapper)


def torch_module(model: Model):
    """The ``_Etrag`` torch module inside a built ETRAG thinc model (or None)."""
    return model.layers[0].shims[0]._model if model.layers else None


@registry.architectures("spacy_kbnlp.ETRAG.v1")
def build_etrag_model(
    backbone: Optional[str] = None,
    n_neighbors: int = 4,
    n_candidates: int = 32,
    temperature: float = 0.1,
    prompt_length: int = 1,
    decoder_layers: int = 2,
    max_length: int = 128,
    device: Optional[str] = None,
    label_vocab_only: bool = True,
    label_scoring: str = "sequence",
    neighbour_label_noise: float = 0.0,
    retrieval_dropout: float = 0.0,
    pooling: str = "text",
) -> Model:
    """ETRAG relation classifier (see module doc). Input: ``(texts, exclude_keys)``
    (plus gold label rows in training); output: ``(n_instances, n_labels)`` summed
    label log-likelihoods (``(n_instances, 1)``: of the given labels). The torch module
    is built in ``initialize`` (labels from the component), weights from ``backbone``
    (None = bundled MiniLM warm start). ``label_vocab_only``: the decoder's softmax
    over the label tokens only; ``label_scoring``: ``sequence`` (each label's tokens) or
    ``head`` (one decoder step scores every label; see the module doc).
    ``neighbour_label_noise``: in training, the share of retrieved neighbours whose label
    (in the soft prompt) is replaced by a random bank row's label (0 = none; see the
    module doc). ``retrieval_dropout``: in training, the probability that an instance's
    soft prompts are hidden, so that the same weights also classify without neighbours
    (0 = never; see the module doc and the component's ``retrieval_mix``).
    ``pooling``: the tokens the retrieval embedding averages, ``text`` (all) or ``pair``
    (the marked pair and the words between them; see the module doc)."""
    for name, value, ok in (("n_neighbors", n_neighbors, n_neighbors >= 0),
                            ("n_candidates", n_candidates, n_candidates >= max(1, n_neighbors)),
                            ("temperature", temperature, temperature > 0),
                            ("prompt_length", prompt_length, prompt_length >= 1),
                            ("label_scoring", label_scoring, label_scoring in LABEL_SCORING),
                            ("neighbour_label_noise", neighbour_label_noise, 0 <= neighbour_label_noise <= 1),
                            ("retrieval_dropout", retrieval_dropout, 0 <= retrieval_dropout <= 1),
                            ("pooling", pooling, pooling in POOLING)):
        if not ok:
            raise ValueError(Errors.KBE312.format(value=value, setting=name,
                                                  why="out of range (see spacy_kbnlp.ETRAG.v1)"))
    return Model("etrag", _etrag_forward, init=_etrag_init, layers=[], attrs={
        "backbone": backbone, "n_neighbors": n_neighbors, "n_candidates": n_candidates,
        "temperature": temperature, "prompt_length": prompt_length,
        "decoder_layers": decoder_layers, "max_length": max_length, "device": device,
        "label_vocab_only": label_vocab_only, "label_scoring": label_scoring,
        "neighbour_label_noise": neighbour_label_noise, "retrieval_dropout": retrieval_dropout,
        "pooling": pooling, "labels": None})
