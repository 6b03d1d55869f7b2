"""``python -m spacy_kbnlp demo``: the README demo on the embedded demo KB and text.

It builds a dense KB from ``assets/demo/kb.jsonl``, cuts the demo text into
passages (EntQA's L=32 tokens every S=16) and prints the top retrieved entities
per passage, with timings. Later components extend it (linking, coreference,
relations).
"""
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import typer
from wasabi import msg

from ..errors import Errors
from ._util import Opt, app, setup_gpu

DEMO_KB = "kb.jsonl"
DEMO_TEXT = "demo_text.txt"


def find_demo_assets(assets: Optional[Path] = None) -> Path:
    """``assets`` if given, else ``./assets/demo``, else the repository's ``assets/demo``."""
    candidates = [assets] if assets is not None else [
        Path.cwd() / "assets" / "demo", Path(__file__).resolve().parents[2] / "assets" / "demo"]
    for path in candidates:
        if path is not None and (path / DEMO_KB).exists() and (path / DEMO_TEXT).exists():
            return path
    raise FileNotFoundError(Errors.KBE156.format(paths=", ".join(str(p) for p in candidates)))


def run_demo(
    assets: Optional[Path] = None,
    *,
    top_k: int = 3,
    length: int = 32,
    stride: int = 16,
    preset: str = "flat",
    encoder_name: Optional[str] = None,
    show_progress: bool = True,
    printer: Callable[..., Any] = print,
) -> Dict[str, Any]:
    """Build the demo KB, retrieve candidates per passage, print a table.

    Returns the passages, their candidates and the timings (seconds)."""
    from spacy.lang.en import English

    from ..core.windows import iter_passages
    from ..encoders.hf import HFEncoder
    from ..kb.dense_kb import DenseKB
    from ..kb.records import read_entities

    assets = find_demo_assets(assets)
    timings: Dict[str, float] = {}
    t_all = time.perf_counter()

    t = time.perf_counter()
    encoder = HFEncoder(encoder_name).load()
    timings["load_encoder_s"] = time.perf_counter() - t

    t = time.perf_counter()
    records = read_entities(assets / DEMO_KB)
    kb = DenseKB.build(records, encoder, preset=preset, show_progress=show_progress)
    timings["build_kb_s"] = time.perf_counter() - t

    nlp = English()
    text = (assets / DEMO_TEXT).read_text(encoding="utf-8")
    t = time.perf_counter()
    doc = nlp(text)
    passages = list(iter_passages(doc, length=length, stride=stride))
    vectors = encoder.encode([p.text for p in passages])
    timings["embed_passages_s"] = time.perf_counter() - t

    t = time.perf_counter()
    scores, ids = kb.search(vectors, top_k)
    timings["search_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_all

    results: List[Dict[str, Any]] = []
    for passage, row_scores, row_ids in zip(passages, scores, ids):
        cands = [(eid, kb.get(eid).name, float(s)) for eid, s in zip(row_ids, row_scores)]
        results.append({"start": passage.start, "end": passage.end, "text": passage.text, "candidates": cands})

    printer(msg.text(f"Demo KB: {len(kb)} entities, preset '{preset}', encoder '{encoder.name}' (dim {encoder.dim})", no_print=True))
    printer(msg.text(f"Demo text: {len(doc)} tokens, {len(passages)} passages of {length} tokens every {stride}", no_print=True))
    rows = []
    for i, res in enumerate(results):
        snippet = " ".join(res["text"].split())
        snippet = snippet if len(snippet) <= 58 else snippet[:55] + "..."
        rows.append((i, f"{res['start']}-{res['end']}", snippet,
                     ", ".join(f"{name} ({score:.2f})" for _, name, score in res["candidates"])))
    from wasabi import table

    printer(table(rows, header=("#", "tokens", "passage", f"top-{top_k} entities (cosine)"), divider=True))
    printer(table([(k, f"{v:.2f}") for k, v in timings.items()], header=("step", "seconds"), divider=True))
    return {"passages": results, "timings": timings, "n_entities": len(kb)}


@app.command("demo")
def demo_cli(
    # fmt: off
    assets: Optional[Path] = Opt(None, "--assets", help="Folder with kb.jsonl and demo_text.txt (default: assets/demo)"),
    top_k: int = Opt(3, "--top-k", "-k", help="Candidates shown per passage"),
    length: int = Opt(32, "--length", help="Passage length in tokens"),
    stride: int = Opt(16, "--stride", help="Passage stride in tokens"),
    preset: str = Opt("flat", "--preset", help="FAISS index preset"),
    encoder: Optional[str] = Opt(None, "--encoder", help="Encoder path or name (default: bundled all-MiniLM-L6-v2)"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    # fmt: on
):
    """Run the demo: build the dense demo KB, embed the demo text's passages
    and print the top candidate entities per passage, with timings."""
    setup_gpu(gpu_id)
    try:
        run_demo(assets, top_k=top_k, length=length, stride=stride, preset=preset, encoder_name=encoder)
    except (FileNotFoundError, ValueError) as err:
        msg.fail(str(err), exits=1)
