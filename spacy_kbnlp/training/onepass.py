"""Train the one-pass reader (``models/onepass.py``) on hinted mentions of gold
docs with the one torch training loop, and give the final scorer reader features
that are out of sample: two readers, each trained on half of the docs, score the
other half; the reader the linker keeps is trained on all docs."""
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from ..linking.hinted import add_reader_features
from ..models.onepass import OnePassSpec, window_items, window_loss

DEFAULT_TRAINING = {"learning_rate": 5e-5, "batch_size": 8, "max_epochs": 2, "warmup_ratio": 0.1,
                    "seed": 0, "log_every": 20}


def train_onepass(linker, mentions: Sequence[Any], gold: Sequence[int], config: Dict[str, Any],
                  output_dir: Path, spec: OnePassSpec = None):
    """A one-pass reader trained on ``mentions`` (with their gold candidate index,
    -1 = NIL) of ``linker``'s KB."""
    from .loop import train_loop

    spec = spec or OnePassSpec(entity_dim=linker.kb.dim)
    model = spec.build(device="cpu")
    items, _ = window_items(mentions, spec.max_candidates, gold)
    items = [it for it in items if it["mentions"]]
    vectors = linker.kb.vectors
    cfg = {**DEFAULT_TRAINING, **config}
    result = train_loop(model, items, lambda batch: window_loss(model, batch, vectors), cfg,
                        output_dir, show_progress=False)
    model.eval()
    return model, {"windows": len(items), "steps": result.steps, "seconds": result.seconds}


def cross_trained_reader(linker, mentions: List[Any], gold: List[int], doc_pos: List[int],
                         config: Dict[str, Any], output_dir: str) -> Tuple[Any, Dict[str, Any]]:
    """Reader features out of sample for ``mentions`` (in place) and the reader
    trained on all of them."""
    out = Path(output_dir)
    report: Dict[str, Any] = {}
    vectors = linker.kb.vectors
    for half in (0, 1):
        train = [j for j, p in enumerate(doc_pos) if p % 2 != half]
        held = [j for j, p in enumerate(doc_pos) if p % 2 == half]
        reader, rep = train_onepass(linker, [mentions[j] for j in train], [gold[j] for j in train],
                                    config, out / f"half{half}")
        add_reader_features(reader, [mentions[j] for j in held], vectors)
        report[f"half{half}"] = rep
    reader, report["all"] = train_onepass(linker, mentions, gold, config, out / "all")
    return reader, report
