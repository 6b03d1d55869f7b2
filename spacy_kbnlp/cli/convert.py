"""``python -m spacy_kbnlp convert``: corpora -> ``.spacy`` DocBin files.

Reads any format of ``spacy_kbnlp.readers.FORMATS`` and writes the gold Docs with
``DocBin(store_user_data=True)`` so that ``doc._.el_gold``, ``doc._.rel_records``,
``doc._.source`` and the ``doc.spans`` clusters survive. Prints counts and the
alignment statistics of the reader run.
"""
from pathlib import Path
from typing import Any, Dict, Optional, Union

from wasabi import msg

from ..errors import Errors
from ._util import Arg, Opt, app

FORMAT_OPTIONS = {
    "conll2012": ("drop_singletons", "sentences_from"),
    "gum_tsv": ("drop_singletons",),
    "jsonl": ("task",),
}


def output_file(input_path: Union[str, Path], output_path: Union[str, Path]) -> Path:
    """``output_path`` if it ends in ``.spacy``, else ``output_path/<input stem>.spacy``."""
    output_path = Path(output_path)
    if output_path.suffix == ".spacy":
        return output_path
    name = Path(input_path).name
    for suffix in (".benchmark.jsonl", ".jsonl", ".json", ".conll", ".tsv", ".TXT", ".txt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return output_path / f"{name}.spacy"


def convert(
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    fmt: str,
    *,
    lang: str = "en",
    policy: str = "expand",
    limit: int = 0,
    drop_singletons: bool = False,
    sentences_from: Optional[str] = None,
    task: Optional[str] = None,
    split_file: Optional[Union[str, Path]] = None,
    split: Optional[str] = None,
    exclude_from: Optional[Union[str, Path]] = None,
    id_mod: Optional[str] = None,
    show_progress: bool = True,
    quiet: bool = False,
) -> Dict[str, Any]:
    """Convert ``input_path`` (file or folder) in format ``fmt`` to a DocBin file.

    Documents can be selected by id (``readers.select``): ``split_file`` + ``split``
    (e.g. GUM's splits.md and "train"), ``exclude_from`` (a file in the same format
    whose document ids are left out, e.g. the ``-v2-test`` file of a Fair benchmark)
    and ``id_mod`` ("10:0" keeps ids divisible by 10, "10:!0" the others).

    Returns ``{"output": path, "counts": {...}, "alignment": AlignmentStats.to_dict()}``."""
    import spacy
    from spacy.tokens import DocBin
    from tqdm import tqdm

    from ..extensions import get_coref_clusters
    from ..readers import FORMATS, AlignmentStats, read_docs
    from ..readers.select import doc_id, read_split_names, select_docs
    from ..readers.spans import check_policy

    if fmt not in FORMATS:
        raise ValueError(Errors.KBE050.format(fmt=fmt, options=", ".join(FORMATS)))
    check_policy(policy)
    if not Path(input_path).exists():
        raise ValueError(Errors.KBE052.format(path=input_path))
    nlp = spacy.blank(lang)
    stats = AlignmentStats(reader=fmt, policy=policy)
    given = {"drop_singletons": drop_singletons, "sentences_from": sentences_from, "task": task}
    options: Dict[str, Any] = {k: given[k] for k in FORMAT_OPTIONS.get(fmt, ())}
    if fmt != "spacy":
        options.update(policy=policy, stats=stats)
    include = read_split_names(split_file, split) if split_file else None
    exclude = None
    if exclude_from:
        other = {k: v for k, v in options.items() if k != "stats"}
        exclude = {doc_id(d) for d in read_docs(exclude_from, fmt, nlp, **other)}
    selecting = include is not None or exclude is not None or bool(id_mod)
    if limit and not selecting:
        options["limit"] = limit
    counts = {"docs": 0, "tokens": 0, "ents": 0, "el_labels": 0, "clusters": 0, "mentions": 0,
              "relations": 0}
    doc_bin = DocBin(store_user_data=True)
    docs = read_docs(input_path, fmt, nlp, **options)
    if selecting:
        docs = select_docs(docs, include=include, exclude=exclude, id_mod=id_mod)
    for doc in tqdm(docs, desc=f"convert {fmt}", unit="doc", disable=not show_progress,
                    leave=False):
        if limit and counts["docs"] >= limit:
            break
        counts["docs"] += 1
        counts["tokens"] += len(doc)
        counts["ents"] += len(doc.ents)
        counts["el_labels"] += len(doc._.el_gold or ())
        clusters = get_coref_clusters(doc)
        counts["clusters"] += len(clusters)
        counts["mentions"] += sum(len(c) for c in clusters)
        counts["relations"] += len(doc._.rel_records or ())
        doc_bin.add(doc)
    out = output_file(input_path, output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc_bin.to_disk(out)
    result = {"output": str(out), "counts": counts, "alignment": stats.to_dict()}
    if not quiet:
        msg.good(f"Wrote {counts['docs']} docs to {out}")
        msg.text(", ".join(f"{k}: {v}" for k, v in counts.items()))
        a = stats.to_dict()
        msg.text(
            f"Alignment (policy '{policy}'): {a['char_spans']} character spans, {a['exact']} "
            f"exact, {a['expanded']} expanded, {a['contracted']} contracted, {a['dropped']} "
            f"dropped; {a['ents_skipped']} overlapping spans kept out of doc.ents; "
            f"{a['replaced_tokens']} empty tokens replaced")
        for example in a["examples"][:5]:
            msg.text(f"  {example}")
    return result


@app.command("convert")
def convert_cli(
    # fmt: off
    input_path: Path = Arg(..., help="Input file or folder", exists=True),
    output_path: Path = Arg(..., help="Output .spacy file, or folder (gets <input>.spacy)"),
    fmt: str = Opt(..., "--format", "-f", help="elevant, conll2012, gum_tsv, conll04, semeval2010, jsonl or spacy"),
    lang: str = Opt("en", "--lang", "-l", help="Language of the blank tokenizer"),
    policy: str = Opt("expand", "--policy", "-p", help="Character spans off token boundaries: expand, contract or strict (error)"),
    limit: int = Opt(0, "--limit", help="Read at most this many docs (0 = all)"),
    drop_singletons: bool = Opt(False, "--drop-singletons", help="conll2012/gum_tsv: drop one-mention clusters"),
    sentences_from: Optional[str] = Opt(None, "--sentences-from", help="conll2012: GUM tsv folder for sentence starts, or 'auto'"),
    task: Optional[str] = Opt(None, "--task", help="jsonl: el, coref or re (default: from the keys)"),
    split_file: Optional[Path] = Opt(None, "--split-file", help="Keep the documents named in this file (GUM splits.md with --split, or one name per line)"),
    split: Optional[str] = Opt(None, "--split", help="Split heading in --split-file, e.g. train, dev, test"),
    exclude_from: Optional[Path] = Opt(None, "--exclude-from", help="Leave out the document ids found in this file (same format)"),
    id_mod: Optional[str] = Opt(None, "--id-mod", help="Keep numeric ids with id %% N == K ('N:K') or the others ('N:!K')"),
    # fmt: on
):
    """Convert a corpus to a .spacy DocBin (gold annotations and user data kept)
    and print counts and alignment statistics."""
    try:
        convert(input_path, output_path, fmt, lang=lang, policy=policy, limit=limit,
                drop_singletons=drop_singletons, sentences_from=sentences_from, task=task,
                split_file=split_file, split=split, exclude_from=exclude_from, id_mod=id_mod)
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
