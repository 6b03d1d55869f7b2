"""Few-shot prompts from retrieved demonstrations (``doc._.demonstrations``).

The prompt states the task and the label set, then shows each demonstration as
``Text:`` (its rendered input, entities marked ``[E0 type: text]``) and
``Answer:`` (its target, see ``retrieval.render``), and ends with the Doc's input
and an open ``Answer:``. The answer format is the target format, one item per line:
``head | label | tail`` (relations) or ``text | label`` (entities), ``none`` if empty.
"""
from typing import Any, Dict, Optional, Sequence

from spacy.tokens import Doc

from ..retrieval.render import render_input

INSTRUCTIONS = {
    "re": ("Extract the relations between the marked entities [E<i> type: text] of the text. "
           "Relation labels: {labels}. Answer with one relation per line as "
           "'head entity | label | tail entity' using the entity texts, or 'none'."),
    "ner": ("Find the named entities of the text. Entity labels: {labels}. Answer with one "
            "entity per line as 'entity text | label', or 'none'."),
}


def build_prompt(doc: Doc, labels: Sequence[str], *, task: str = "re",
                 demonstrations: Optional[Sequence[Dict[str, Any]]] = None,
                 max_demonstrations: int = 5, input_format: str = "marked") -> str:
    """The few-shot prompt for ``doc`` (see module doc)."""
    parts = [INSTRUCTIONS[task].format(labels=", ".join(labels) if labels else "any")]
    for demo in list(demonstrations or [])[:max_demonstrations]:
        shown = demo["input"] if task == "re" else demo["text"]  # ner: never show the marks
        parts.append(f"Text: {shown}\nAnswer:\n{demo['target']}")
    text = render_input(doc, input_format) if task == "re" else doc.text
    parts.append(f"Text: {text}\nAnswer:\n")
    return "\n\n".join(parts)
