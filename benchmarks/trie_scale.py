"""Prefix-tree scaling for generative entity linking (insgenel_linker).

Builds the name prefix tree of the 14.5k-entity FB15k-237 KB (canonical names +
labels + aliases, tokenized with the MiniLM WordPiece tokenizer after spaCy's word
split, exactly as the component does) and of a synthetic KB of 1M names, with the
compact trie (:class:`spacy_kbnlp.core.decoding.CompactPrefixTrie`) and, for
comparison, the dict-of-nodes :class:`~spacy_kbnlp.core.decoding.PrefixTrie` (on the
FB15k-237 names and a 100k-name sample only: at 1M it needs several GB). Reports
tokenization and build time, nodes, array bytes, the process RSS growth and walk
speed (names per second), and writes JSON.

    python benchmarks/trie_scale.py --kb ../shared/data/el/kb_fb15k237_wikidata/entity2wikidata.json \
        --output benchmarks/results/trie_scale.json
"""
import argparse
import gc
import json
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import merge_json  # noqa: E402  (merge by key, never drop others)


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2 ** 20


def walk_speed(trie: Any, seqs: Sequence[Sequence[int]], n: int = 20000, seed: int = 0) -> float:
    """Names walked per second (child lookup token by token + terminal check), the
    work constrained decoding does per generated name."""
    rng = random.Random(seed)
    sample = [seqs[rng.randrange(len(seqs))] for _ in range(n)]
    start = time.perf_counter()
    for q in sample:
        node = trie.walk(q)
        assert node is not None and trie.is_terminal(node)
    return n / (time.perf_counter() - start)


def dict_trie_bytes(seqs: Sequence[Sequence[int]]) -> Dict[str, float]:
    """Memory (tracemalloc) and build time of the dict-of-nodes PrefixTrie."""
    from spacy_kbnlp.core.decoding import PrefixTrie

    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    trie = PrefixTrie()
    for i, q in enumerate(seqs):
        trie.insert(q, i)
    seconds = time.perf_counter() - start
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del trie
    return {"seconds": seconds, "bytes": float(size)}


def measure(name: str, seqs: List[Sequence[int]], values: List[int], tokenize_s: float,
            n_names: int, dict_sample: int) -> Dict[str, Any]:
    from spacy_kbnlp.core.decoding import CompactPrefixTrie

    gc.collect()
    before = rss_mib()
    start = time.perf_counter()
    trie = CompactPrefixTrie.build(seqs, values)
    build_s = time.perf_counter() - start
    grown = rss_mib() - before
    lens = numpy.array([len(q) for q in seqs])
    out = {
        "names": n_names, "sequences": len(seqs), "tokens": int(lens.sum()),
        "mean_tokens": float(lens.mean()), "max_depth": trie.max_depth,
        "tokenize_s": tokenize_s, "build_s": build_s, "nodes": trie.n_nodes,
        "root_children": int(trie.n_children[0]), "compact_bytes": trie.nbytes,
        "compact_mib": trie.nbytes / 2 ** 20,
        "bytes_per_name": trie.nbytes / max(1, len(seqs)),
        "rss_growth_mib": grown, "walks_per_s": walk_speed(trie, seqs),
    }
    sample = seqs if len(seqs) <= dict_sample else seqs[:dict_sample]
    d = dict_trie_bytes(sample)
    out["dict_trie"] = {"sequences": len(sample), "build_s": d["seconds"],
                        "mib": d["bytes"] / 2 ** 20,
                        "bytes_per_name": d["bytes"] / max(1, len(sample))}
    sub = CompactPrefixTrie.build(sample, list(range(len(sample))))
    out["dict_trie"]["compact_mib_same_names"] = sub.nbytes / 2 ** 20
    print(f"{name}: {json.dumps(out, indent=1)}", flush=True)
    return out


def synthetic_names(n: int, words: List[str], seed: int = 0) -> List[str]:
    """``n`` distinct names of 1-4 words drawn from ``words`` (Zipf-like choice,
    so common first words share prefixes as real names do)."""
    rng = numpy.random.default_rng(seed)
    ranks = numpy.arange(1, len(words) + 1, dtype=numpy.float64)
    p = 1.0 / ranks
    p /= p.sum()
    seen = set()
    out: List[str] = []
    while len(out) < n:
        k = n - len(out)
        lens = rng.choice([1, 2, 3, 4], size=k, p=[0.1, 0.5, 0.3, 0.1])
        picks = rng.choice(len(words), size=int(lens.sum()), p=p)
        pos = 0
        for ln in lens:
            name = " ".join(words[i] for i in picks[pos: pos + ln])
            pos += ln
            if name not in seen:
                seen.add(name)
                out.append(name)
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kb", type=Path, default=Path("../shared/data/el/kb_fb15k237_wikidata/entity2wikidata.json"))
    ap.add_argument("--n-synthetic", type=int, default=1_000_000)
    ap.add_argument("--dict-sample", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--output", type=Path, default=Path("benchmarks/results/trie_scale.json"))
    args = ap.parse_args()

    import spacy
    import torch
    from transformers import AutoTokenizer

    from spacy_kbnlp.encoders.hf import resolve_model_path
    from spacy_kbnlp.kb.records import load_records
    from spacy_kbnlp.models.insgenel import NameTable, add_markup_tokens, name_units, split_words

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(resolve_model_path(None), local_files_only=True)
    add_markup_tokens(tok)
    splitter = spacy.blank("en").tokenizer
    results: Dict[str, Any] = {"machine": "shared 2-core CPU", "tokenizer": "all-MiniLM-L6-v2 WordPiece",
                               "rss_start_mib": rss_mib()}

    records = load_records(args.kb, duplicates="first")
    start = time.perf_counter()
    table = NameTable.from_records(records).build(tok, splitter)
    tokenize_s = time.perf_counter() - start
    results["fb15k237"] = measure("fb15k237", table.seqs, table.seq_rows, tokenize_s,
                                  len(records), args.dict_sample)
    results["fb15k237"]["entities"] = len(records)
    results["fb15k237"]["skipped_names"] = len(table.skipped)

    words = sorted({w for r in records for w in (r.name or "").split() if w.isalpha()})
    random.Random(0).shuffle(words)
    start = time.perf_counter()
    names = synthetic_names(args.n_synthetic, words)
    gen_s = time.perf_counter() - start
    start = time.perf_counter()
    seqs = name_units(split_words(names), tok)
    tokenize_s = time.perf_counter() - start
    del names
    results["synthetic"] = measure("synthetic", seqs, list(range(len(seqs))), tokenize_s,
                                   args.n_synthetic, args.dict_sample)
    results["synthetic"].update(generate_s=gen_s, word_pool=len(words),
                                split="whitespace (no spaCy split at this size)")
    results["rss_end_mib"] = rss_mib()
    merge_json(args.output, results, depth=1, indent=2)  # other keys of the file stay
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
