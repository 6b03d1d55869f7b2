"""Check the demo assets (stdlib only): python assets/demo/validate_demo.py"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
TYPES = {"person", "organization", "location", "work", "event", "product", "concept"}
ENT_LABELS = {"Peop", "Loc", "Org", "Other"}
REL_LABELS = {"Live_In", "OrgBased_In", "Located_In", "Work_For", "Kill"}


def read_jsonl(path):
    with open(path, encoding="utf-8", errors="strict") as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> int:
    errors = []
    kb_path = HERE / "kb.jsonl"
    kb = read_jsonl(kb_path)
    ids = [r["id"] for r in kb]
    if len(ids) != len(set(ids)):
        errors.append("duplicate KB ids")
    for r in kb:
        if set(r) != {"id", "name", "description", "aliases", "types"}:
            errors.append(f"{r.get('id')}: keys {sorted(r)}")
        if not (isinstance(r["name"], str) and r["name"].strip()):
            errors.append(f"{r['id']}: empty name")
        if not (10 <= len(r["description"].split()) <= 25):
            errors.append(f"{r['id']}: description has {len(r['description'].split())} words")
        if not all(isinstance(a, str) and a.strip() and a != r["name"] for a in r["aliases"]):
            errors.append(f"{r['id']}: bad alias")
        if not r["types"] or not set(r["types"]) <= TYPES:
            errors.append(f"{r['id']}: bad types {r['types']}")
    kb_by_id = {r["id"]: r for r in kb}
    non_ascii = [r["id"] for r in kb if not r["name"].isascii()]
    for i in non_ascii:
        if not any(a.isascii() for a in kb_by_id[i]["aliases"]):
            errors.append(f"{i}: non-ASCII name without an ASCII alias")
    by_surface = {}
    for r in kb:
        for s in [r["name"], *r["aliases"]]:
            by_surface.setdefault(s.lower(), set()).add(r["id"])
    ambiguous = sum(1 for v in by_surface.values() if len(v) > 1)

    text = (HERE / "demo_text.txt").read_text(encoding="utf-8")
    gold = read_jsonl(HERE / "demo_gold.jsonl")
    if len(gold) != 1 or gold[0]["id"] != "demo" or gold[0]["text"] != text:
        errors.append("demo_gold.jsonl must be one record whose text is demo_text.txt")
    mentions = gold[0]["mentions"]
    last_end = -1
    for m in mentions:
        s, e, kid = m["start"], m["end"], m["kb_id"]
        surface = text[s:e]
        if kid not in kb_by_id:
            errors.append(f"gold kb_id {kid} not in KB")
        elif kid not in by_surface.get(surface.lower(), set()):
            errors.append(f"gold surface {surface!r} is not a name/alias of {kid}")
        if s <= last_end or not surface or surface != surface.strip():
            errors.append(f"bad/overlapping mention {s}-{e} {surface!r}")
        last_end = e - 1

    coref = read_jsonl(HERE / "demo_coref_gold.jsonl")
    if len(coref) != 1 or coref[0]["id"] != "demo" or coref[0]["text"] != text:
        errors.append("demo_coref_gold.jsonl must be one record whose text is demo_text.txt")
    seen = set()
    for cluster in coref[0]["clusters"]:
        if len(cluster) < 2:
            errors.append(f"coref cluster with fewer than 2 mentions: {cluster}")
        for s, e in cluster:
            surface = text[s:e]
            if not (0 <= s < e <= len(text)) or surface != surface.strip() or (s, e) in seen:
                errors.append(f"bad or repeated coref mention {s}-{e} {surface!r}")
            seen.add((s, e))
    n_coref = sum(len(c) for c in coref[0]["clusters"])

    rels = read_jsonl(HERE / "demo_relations.jsonl")
    n_rel = 0
    for rec in rels:
        t, ents = rec["text"], rec["entities"]
        for en in ents:
            if not (0 <= en["start"] < en["end"] <= len(t)) or en["label"] not in ENT_LABELS:
                errors.append(f"{rec['id']}: bad entity {en}")
        for r in rec["relations"]:
            n_rel += 1
            if not (0 <= r["head"] < len(ents) and 0 <= r["tail"] < len(ents)) or r["head"] == r["tail"]:
                errors.append(f"{rec['id']}: bad relation indices {r}")
            if r["label"] not in REL_LABELS:
                errors.append(f"{rec['id']}: bad relation label {r}")
    size = kb_path.stat().st_size
    if size >= 150_000 or not (300 <= len(kb) <= 400):
        errors.append(f"KB size {size} bytes / {len(kb)} entities out of range")
    print(f"KB: {len(kb)} entities, {size} bytes, {len(non_ascii)} non-ASCII names, "
          f"{ambiguous} ambiguous surface forms; demo text: {len(text.split())} words, "
          f"{len(mentions)} gold mentions of {len({m['kb_id'] for m in mentions})} entities; "
          f"relations: {len(rels)} sentences, {n_rel} relations; coreference: "
          f"{len(coref[0]['clusters'])} gold clusters, {n_coref} mentions")
    for err in errors:
        print("ERROR:", err)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
