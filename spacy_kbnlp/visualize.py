"""displaCy views of what the spacy_kbnlp components write: entity links, nested
mentions, coreference clusters and relations.

``render(doc)`` builds on :mod:`spacy.displacy` with ``manual=True`` data:

* **spans** (displaCy's ``"span"`` style, which stacks nested and overlapping
  spans): every link of ``doc._.kb_links`` and every entity of ``doc.ents`` without
  one, labelled with its entity label, a ``kb_id`` shown as a link made from
  ``kb_url_template``; every coreference mention labelled with its cluster,
  ``"cluster N: <representative mention>"``.
* **relations**: displaCy's ``"dep"`` style draws one arc per relation of
  ``doc._.rel_records`` (head to tail) over the text between the arguments (each
  argument one word, the tokens between two arguments one word); a plain HTML
  table lists every relation with its score and the arguments' links (displaCy
  has no table).

    import spacy_kbnlp
    html = spacy_kbnlp.render(doc, kb_url_template="https://www.wikidata.org/wiki/{kb_id}")
"""
import html as _html
import re
import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote

from spacy import displacy
from spacy.displacy.templates import TPL_FIGURE, TPL_PAGE, TPL_SPAN, TPL_SPAN_SLICE, TPL_SPAN_START
from spacy.tokens import Doc, Span

from .errors import Errors, Warnings
from .extensions import DEFAULT_CLUSTER_PREFIX, cluster_representative, find_link, get_coref_clusters

STYLES = ("links", "coref", "relations")
WIKIDATA_URL = "https://www.wikidata.org/wiki/{kb_id}"
AUTO = "auto"
QID = re.compile(r"Q[1-9][0-9]*")
# one colour per coreference cluster (cycled); links keep displaCy's entity colours
CLUSTER_COLORS = ("#c5a3ff", "#9fd8f0", "#ffb3ba", "#b5e7a0", "#ffd59e", "#d4c4fb",
                  "#a0e7e5", "#f6c6ea", "#e2f0cb", "#ffdac1")
MAX_REP_CHARS = 30
MAX_GAP_CHARS = 24
# displaCy's span templates with labels kept on one line (displaCy wraps them to the
# width of the first token, so "cluster 1: Marie Curie" over "She" became 4 lines)
SPAN_TEMPLATE = {"span": TPL_SPAN, "slice": TPL_SPAN_SLICE,
                 "start": TPL_SPAN_START.replace("border-radius: 3px\"",
                                                 "border-radius: 3px; white-space: nowrap\"")}
# displaCy's page, declared UTF-8 (it names no charset, so a browser opening the
# file may decode non-ASCII text as Latin-1)
PAGE = TPL_PAGE.replace("<head>", '<head>\n        <meta charset="utf-8">', 1)
TABLE_STYLE = "border-collapse: collapse; margin-top: 1.5rem; font-size: 0.9em"
CELL_STYLE = "border-bottom: 1px solid #ddd; padding: 4px 12px; text-align: left"


def kb_url(kb_id: str, template: Optional[str]) -> str:
    """The URL of ``kb_id`` by ``template`` (``{kb_id}`` or ``{}`` is replaced by the
    URL-quoted id); ``"auto"``: Wikidata for QIDs, none for other ids; ``None``: none
    (``"#"``, displaCy's value for a missing URL)."""
    if template == AUTO:
        template = WIKIDATA_URL if QID.fullmatch(kb_id) else None
    if not template:
        return "#"
    quoted = quote(kb_id, safe="")
    try:
        return template.format(quoted, kb_id=quoted)
    except (IndexError, KeyError, ValueError) as err:
        raise ValueError(Errors.KBE182.format(template=template, err=err)) from None


def _esc(text: str) -> str:
    return _html.escape(str(text), quote=True)


def cluster_label(n: int, cluster: List[Span]) -> str:
    """``"cluster N: <representative mention>"`` (shortened to 30 characters)."""
    rep = " ".join(cluster_representative(cluster).text.split())
    if len(rep) > MAX_REP_CHARS:
        rep = rep[: MAX_REP_CHARS - 3] + "..."
    return f"cluster {n}: {rep}"


def link_records(doc: Doc) -> List[Dict[str, Any]]:
    """The entity mentions of ``doc`` with their links: ``doc._.kb_links`` (one per
    span and kb_id, best score kept), then each of ``doc.ents`` that no link has the
    boundaries of (``kb_id`` its ``kb_id_``, ``""`` when unlinked); by position."""
    best: Dict[Tuple[int, int, str], Dict[str, Any]] = {}
    for rec in doc._.kb_links or ():
        key = (int(rec["start"]), int(rec["end"]), str(rec["kb_id"]))
        if key not in best or float(rec.get("score", 0.0)) > float(best[key].get("score", 0.0)):
            best[key] = rec
    linked = {(s, e) for s, e, _ in best}
    for ent in doc.ents:
        if (ent.start, ent.end) not in linked:
            best[(ent.start, ent.end, ent.kb_id_)] = {"start": ent.start, "end": ent.end,
                                                      "kb_id": ent.kb_id_, "label": ent.label_}
    return [best[k] for k in sorted(best)]


def span_data(doc: Doc, styles: Sequence[str], kb_url_template: Optional[str],
              cluster_prefix: str = DEFAULT_CLUSTER_PREFIX) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """displaCy ``"span"`` data (``manual=True``) for the links and/or coreference
    mentions of ``doc``, and the colours of the cluster labels."""
    spans: List[Dict[str, Any]] = []
    colors: Dict[str, str] = {}

    def add(start: int, end: int, label: str, kb_id: str = "", url: str = "#") -> None:
        sp = doc[start:end]
        spans.append({"start": sp.start_char, "end": sp.end_char, "start_token": start,
                      "end_token": end, "label": _esc(label), "kb_id": _esc(kb_id),
                      "kb_url": _esc(url)})

    if "links" in styles:
        for rec in link_records(doc):
            kb_id = str(rec["kb_id"])
            add(int(rec["start"]), int(rec["end"]), str(rec.get("label") or "ENTITY"), kb_id,
                kb_url(kb_id, kb_url_template) if kb_id else "#")
    if "coref" in styles:
        for n, cluster in enumerate(get_coref_clusters(doc, cluster_prefix), start=1):
            if not cluster:
                continue
            label = cluster_label(n, cluster)
            colors[_esc(label).upper()] = CLUSTER_COLORS[(n - 1) % len(CLUSTER_COLORS)]
            for m in cluster:
                add(m.start, m.end, label)
    data = {"text": doc.text, "spans": spans, "tokens": [t.text for t in doc],
            "title": doc.user_data.get("title"),
            "settings": {"lang": doc.lang_,
                         "direction": doc.vocab.writing_system.get("direction", "ltr")}}
    return data, colors


def _relation_groups(records: List[Dict[str, Any]]) -> List[Tuple[int, int, List[Dict[str, Any]]]]:
    """Relations grouped by overlapping token ranges (head and tail included)."""
    items = sorted(((min(r["head"][0], r["tail"][0]), max(r["head"][1], r["tail"][1]), r)
                    for r in records), key=lambda x: (x[0], x[1]))
    groups: List[Tuple[int, int, List[Dict[str, Any]]]] = []
    for start, end, rec in items:
        if groups and start < groups[-1][1]:
            g = groups[-1]
            groups[-1] = (g[0], max(g[1], end), g[2] + [rec])
        else:
            groups.append((start, end, [rec]))
    return groups


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    half = (limit - 3) // 2
    return f"{text[:half]}...{text[-half:]}"


def relation_arcs(doc: Doc, start: int, end: int,
                  records: List[Dict[str, Any]]) -> Dict[str, Any]:
    """displaCy ``"dep"`` data (``manual=True``) for ``records`` over ``doc[start:end]``:
    each outermost argument one word (its tag: the link's label and kb_id, if
    linked), the tokens between arguments one word (shortened to 24 characters),
    one arc per relation from head to tail (labelled ``label score``)."""
    args = sorted({(r[side][0], r[side][1]) for r in records for side in ("head", "tail")},
                  key=lambda x: (x[0], -x[1]))
    units: List[Tuple[int, int]] = []
    covered = -1
    for s, e in args:  # outermost arguments become one word each
        if s >= covered:
            units.append((s, e))
            covered = e
    words: List[Dict[str, str]] = []
    index: Dict[int, int] = {}  # token -> word
    starts = {s: e for s, e in units}
    i = start
    while i < end:
        if i in starts:
            e = starts[i]
            link = find_link(doc[i:e])
            tag = f"{link.get('label') or 'ENTITY'} {link['kb_id']}" if link else ""
            words.append({"text": doc[i:e].text, "tag": tag})
        else:  # the gap up to the next argument
            e = min([s for s in starts if s > i] + [end])
            words.append({"text": _shorten(doc[i:e].text, MAX_GAP_CHARS), "tag": ""})
        for tok in range(i, e):
            index[tok] = len(words) - 1
        i = e
    arcs = []
    for r in records:
        h, t = index[r["head"][0]], index[r["tail"][0]]
        if h == t:  # nested arguments in one word: the table shows them
            continue
        label = f"{r['label']} {float(r.get('score', 1.0)):.2f}"
        arcs.append({"start": min(h, t), "end": max(h, t), "label": label,
                     "dir": "right" if h < t else "left"})
    return {"words": words, "arcs": arcs}


def _arc_options(words: List[Dict[str, str]]) -> Dict[str, Any]:
    """displaCy ``"dep"`` options wide enough for the longest word (about 9 px a
    character at displaCy's 16 px font) and for the first word left of its centre."""
    width = max(max(len(w["text"]), len(w["tag"])) for w in words) * 9
    first = max(len(words[0]["text"]), len(words[0]["tag"])) * 9
    return {"compact": True, "distance": max(80, width + 20), "offset_x": max(50, first // 2 + 10)}


def relation_table(doc: Doc, kb_url_template: Optional[str]) -> str:
    """Every relation of ``doc`` as an HTML table: head, relation, tail, score; linked
    arguments show their kb_id as a link."""

    def cell(span: Span) -> str:
        link = find_link(span)
        text = _esc(span.text)
        if link is None:
            return text
        url = kb_url(str(link["kb_id"]), kb_url_template)
        return (f'{text} <a style="color: #555" href="{_esc(url)}">{_esc(link["kb_id"])}</a>')

    td = f'<td style="{CELL_STYLE}">'
    rows = "".join(
        f"<tr>{td}{cell(h)}</td>{td}<b>{_esc(label)}</b></td>{td}{cell(t)}</td>"
        f"{td}{score:.2f}</td></tr>"
        for h, t, label, score in doc._.relations)
    head = "".join(f'<th style="{CELL_STYLE}">{h}</th>' for h in ("head", "relation", "tail", "score"))
    return f'<table class="kb-relations" style="{TABLE_STYLE}"><tr>{head}</tr>{rows}</table>'



def _has(doc: Doc, style: str, cluster_prefix: str) -> bool:
    if style == "links":
        return bool(link_records(doc))
    if style == "coref":
        return any(get_coref_clusters(doc, cluster_prefix))
    return bool(doc._.rel_records)


def check_options(styles: Optional[Union[str, Iterable[str]]],
                  kb_url_template: Optional[str] = AUTO) -> Optional[List[str]]:
    """The styles as a list (``None``: every one); KBE181 for an unknown style,
    KBE182 for a URL template that cannot be filled."""
    if kb_url_template not in (None, AUTO):
        kb_url("Q1", kb_url_template)
    if styles is None:
        return None
    styles = [styles] if isinstance(styles, str) else list(styles)
    unknown = [s for s in styles if s not in STYLES]
    if unknown or not styles:
        raise ValueError(Errors.KBE181.format(styles=", ".join(map(repr, unknown)) or "none",
                                              options=", ".join(STYLES)))
    return styles


def render_doc(doc: Doc, styles: Sequence[str], kb_url_template: Optional[str] = AUTO,
               cluster_prefix: str = DEFAULT_CLUSTER_PREFIX) -> str:
    """The HTML fragment (no page) of one doc: the span view, then the relations."""
    parts: List[str] = []
    span_styles = [s for s in styles if s in ("links", "coref")]
    if span_styles:
        data, colors = span_data(doc, span_styles, kb_url_template, cluster_prefix)
        parts.append(displacy.render(data, style="span", manual=True, jupyter=False,
                                     options={"colors": colors, "template": SPAN_TEMPLATE}))
    if "relations" in styles:
        arcs = []
        for s, e, recs in _relation_groups(list(doc._.rel_records or ())):
            data = relation_arcs(doc, s, e, recs)
            arcs.append(displacy.render(data, style="dep", manual=True, jupyter=False,
                                        options=_arc_options(data["words"])))
        parts.append('<div class="kb-relation-arcs">' + "".join(arcs) + "</div>"
                     + relation_table(doc, kb_url_template))
    return "\n".join(parts)


def render(
    docs: Union[Doc, Iterable[Doc]],
    *,
    styles: Optional[Union[str, Iterable[str]]] = None,
    kb_url_template: Optional[str] = AUTO,
    cluster_prefix: str = DEFAULT_CLUSTER_PREFIX,
    page: bool = True,
    jupyter: Optional[bool] = False,
) -> str:
    """HTML showing the entity links, nested mentions, coreference clusters and
    relations of ``docs`` (a Doc or Docs), built with displaCy.

    styles: any of ``"links"``, ``"coref"``, ``"relations"``; ``None`` (default):
        every one the docs have. A requested style a doc lacks is left out with a
        warning (KBW180); no annotation at all is an error (KBE180).
    kb_url_template: the URL of a kb_id, ``{kb_id}`` (or ``{}``) replaced, e.g.
        ``"https://www.wikidata.org/wiki/{kb_id}"``; ``"auto"`` (default): Wikidata
        for QIDs, no URL for other ids; ``None``: no URLs.
    cluster_prefix: the ``doc.spans`` prefix of the coreference clusters.
    page: a whole HTML page (default) or a fragment.
    jupyter: show the HTML in a notebook (``None``: if running in one) and return it.
    """
    styles = check_options(styles, kb_url_template)
    if isinstance(docs, (Doc, Span, str)) or not hasattr(docs, "__iter__"):
        docs = [docs]
    docs = list(docs)
    bad = [type(d).__name__ for d in docs if not isinstance(d, Doc)]
    if bad or not docs:
        raise TypeError(Errors.KBE183.format(types=", ".join(bad) or "nothing"))
    fragments = []
    for i, doc in enumerate(docs):
        present = [s for s in STYLES if _has(doc, s, cluster_prefix)]
        if styles is not None:
            missing = [s for s in styles if s not in present]
            if missing:
                warnings.warn(Warnings.KBW180.format(i=i, styles=", ".join(missing)))
            present = [s for s in styles if s in present]
        if present:
            fragments.append(render_doc(doc, present, kb_url_template, cluster_prefix))
    if not fragments:
        raise ValueError(Errors.KBE180.format(styles=", ".join(styles or STYLES)))
    if page:
        lang = docs[0].lang_
        direction = docs[0].vocab.writing_system.get("direction", "ltr")
        out = PAGE.format(content="".join(TPL_FIGURE.format(content=f) for f in fragments),
                              lang=lang, dir=direction)
    else:
        out = "\n".join(fragments)
    from spacy.util import is_in_jupyter

    if jupyter or (jupyter is None and is_in_jupyter()):
        from IPython.display import HTML, display

        display(HTML(out))
    return out
