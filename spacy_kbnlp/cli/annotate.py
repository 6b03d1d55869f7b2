"""``python -m spacy_kbnlp annotate PIPELINE INPUT OUTPUT_DIR``: annotate a corpus into
sharded JSON lines, resumable and exactly once, in this process or on Ray
(``--engine ray``); see :mod:`spacy_kbnlp.scale` and docs/scale.md."""
from pathlib import Path
from typing import Optional

from wasabi import msg, table

from ._util import Arg, Opt, app


@app.command("annotate")
def annotate_cli(
    # fmt: off
    pipeline: str = Arg(..., help="Pipeline folder or package name"),
    input_path: Path = Arg(..., help="JSON lines file, Parquet file (.parquet) or folder of .txt files"),
    output_dir: Path = Arg(..., help="Output folder (shards, manifest.json, rejects.jsonl); an earlier run there is resumed"),
    engine: str = Opt("local", "--engine", help="local (nlp.pipe here) or ray"),
    address: Optional[str] = Opt(None, "--address", help="Ray cluster address (default: a local Ray started and stopped here)"),
    workers: int = Opt(1, "--workers", "-w", help="Ray actors (local: nlp.pipe n_process)"),
    batch_size: int = Opt(64, "--batch-size", "-b", help="Documents per batch"),
    gpus_per_worker: float = Opt(0.0, "--gpus-per-worker", help="GPUs per Ray actor (the pipeline moves to the actor's GPU)"),
    text_field: str = Opt("text", "--text-field", help="Field (column) with the text"),
    id_field: str = Opt("id", "--id-field", help="Field (column) with the document id"),
    shard_size: int = Opt(1000, "--shard-size", help="Documents per output shard"),
    docbin: bool = Opt(False, "--docbin", help="Also write DocBin shards (.spacy)"),
    # fmt: on
):
    """Annotate a corpus with a pipeline: one JSON record per document with the links
    (kb_id, score, character offsets), coreference clusters and relations, in
    shards with a manifest; rejected records go to rejects.jsonl. A rerun skips
    finished shards."""
    from ..scale import annotate

    try:
        s = annotate(pipeline, input_path, output_dir, engine=engine, address=address,
                     workers=workers, batch_size=batch_size, gpus_per_worker=gpus_per_worker,
                     text_field=text_field, id_field=id_field, shard_size=shard_size, docbin=docbin)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Annotated {s['docs']} documents in {s['seconds']:.1f}s ({s['docs_per_s']:.1f} docs/s); "
             f"{s['skipped']} already done, {s['rejects']} rejected; {s['shards']} shards in {output_dir}")
    rows = [(name, w["docs"], f"{w['busy_s']:.1f}", f"{w['docs_per_s']:.1f}") for name, w in s["workers"].items() if w["docs"]]
    if rows:
        print(table(rows, header=("worker", "docs", "busy s", "docs/s"), divider=True))
