"""Registered helpers for the spacy-experimental coref peer (``--code`` file, peer venv only).

``HeadCopyingCorpus.v1`` copies the gold head clusters onto the predicted docs so
the span resolver learns head -> span, as in explosion/projects experimental/coref.

``peer_step_clock.v1`` (``[training.before_update]``) logs the wall clock every few
steps (spaCy's console logger only prints at evaluations) and, with ``max_minutes``,
bounds the run by time: it ends the process cleanly (spaCy saves model-last; model-best
is the best evaluation so far), as our own trainer's ``max_minutes`` does.

Importing this file (``spacy train ... --code``) sets torch to ``PEER_TORCH_THREADS``
threads (default 1), as our own training runs use, since spaCy's trainer leaves torch
at one thread per core."""
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import spacy
import torch
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example

torch.set_num_threads(int(os.environ.get("PEER_TORCH_THREADS", "1")))


@spacy.registry.readers("HeadCopyingCorpus.v1")
def create_head_copy_reader(path: Path, head_prefix: str) -> Callable[[Language], Iterable[Example]]:
    return partial(_copy_heads, path, head_prefix)


def _copy_heads(path: Path, head_prefix: str, nlp: Language) -> Iterable[Example]:
    for doc in DocBin().from_disk(path).get_docs(nlp.vocab):
        pred = Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])
        for name, group in doc.spans.items():
            if name.startswith(head_prefix):
                pred.spans[name] = [pred[s.start:s.end] for s in group]
        yield Example(pred, doc)


@spacy.registry.callbacks("peer_step_clock.v1")
def create_step_clock(every: int = 10, max_minutes: float = 0.0) -> Callable[[Language, dict], None]:
    start = time.perf_counter()

    def step_clock(nlp: Language, info: dict) -> None:
        elapsed = time.perf_counter() - start
        if info["step"] % every == 0:
            print(f"[clock] step {info['step']} epoch {info['epoch']} {elapsed / 60:.1f} min",
                  file=sys.stderr, flush=True)
        if max_minutes and elapsed > 60 * max_minutes:
            print(f"[clock] time bound of {max_minutes} min reached at step {info['step']}: stopping",
                  file=sys.stderr, flush=True)
            sys.exit(0)

    return step_clock
