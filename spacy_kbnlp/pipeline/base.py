"""The base of spacy-kbnlp's components that hold their own torch weights or stores.

:class:`KBPipe` gives every component the same

* ``__call__``/``pipe``: batches of docs, ``predict`` then ``set_annotations``,
  failures routed to the pipeline's error handler (as spaCy's ``TrainablePipe``);
  the torch weights are moved to the current device first (:mod:`..core.device`);
* ``to_disk``/``from_disk`` built from per-component writer/reader dicts
  (:meth:`KBPipe.serializers`, :meth:`KBPipe.deserializers`) plus ``cfg``, and
  ``to_bytes``/``from_bytes`` on top of them;
* ``score`` passing ``self.cfg`` and keyword arguments to the registered scorer;
* settings checks (:meth:`KBPipe.check_ints`).

One config truth: the settings come from ``nlp.config`` through the factory. The
``cfg`` file in the component folder holds derived state only (the keys in
``DERIVED``, e.g. ``format_version`` or learned labels), so ``spacy.load(path,
config={...})`` overrides take effect. :func:`update_settings` changes settings of a
loaded pipeline in ``nlp.config`` and on the component, so ``nlp.to_disk`` keeps
them (what the CLI's calibration commands use).
"""
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import srsly
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from spacy.util import dot_to_dict, ensure_path, from_disk as util_from_disk
from spacy.util import minibatch, to_disk as util_to_disk

from ..core.device import current_device, place
from ..errors import Errors
from ..extensions import install_extensions

PathLike = Union[str, Path]


class KBPipe(Pipe):
    """Shared behaviour of spacy-kbnlp components (see the module doc). Subclasses
    set ``self.vocab``, ``self.name``, ``self.cfg`` (settings and derived state) and
    ``self.scorer``, and implement ``predict``/``set_annotations``."""

    #: keys of ``self.cfg`` that are derived state: saved in ``cfg`` and restored
    DERIVED: Sequence[str] = ("format_version",)
    #: settings the saved model was built for: a config that differs is KBE161
    ARCHITECTURE: Sequence[str] = ()
    #: docs per batch in ``pipe`` when none is given
    default_batch_size: int = 64

    cfg: Dict[str, Any]
    scorer: Optional[Callable]

    # ------------------------------------------------------------ prediction
    @property
    def pipe_batch_size(self) -> int:
        return self.default_batch_size

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc], batch_size=1)))

    def pipe(self, stream: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        """Batches of ``batch_size`` docs (default :attr:`pipe_batch_size`)."""
        install_extensions()
        error_handler = self.get_error_handler()
        for docs in minibatch(stream, size=batch_size or self.pipe_batch_size):
            try:
                self.place()
                self.set_annotations(docs, self.predict(docs))
            except Exception as err:  # routed to the pipeline's error handler, as TrainablePipe
                error_handler(self.name, self, docs, err)
            yield from docs

    # ------------------------------------------------------------ device
    def torch_modules(self) -> List[Any]:
        """The torch modules whose weights this component runs (none by default)."""
        return []

    @property
    def device(self) -> "torch.device":
        """Where the weights run now: the ``device`` setting, else thinc's current ops."""
        return current_device(self.cfg.get("device"))

    def place(self) -> "torch.device":
        """Move the weights to :attr:`device` if they are elsewhere (cheap when they
        are not); :meth:`on_moved` follows a move."""
        modules = self.torch_modules()
        if not modules:
            return None
        device = self.device
        if place(modules, device):
            self.on_moved(device)
        return device

    def on_moved(self, device: "torch.device") -> None:
        """Called after :meth:`place` moved weights (e.g. to rebuild derived runtimes)."""

    # ------------------------------------------------------------ settings
    def check_ints(self, keys: Iterable[str], minimum: int, error: Callable[[str, str], Exception]
                   ) -> None:
        """Raise ``error(key, why)`` for a setting that is not an integer >= ``minimum``."""
        for key in keys:
            value = self.cfg[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise error(key, "give a positive integer" if minimum >= 1
                            else f"give an integer >= {minimum}")

    def check_settings(self) -> None:
        """Validate ``self.cfg`` (subclasses raise their coded errors)."""

    # ------------------------------------------------------------ scoring
    def score_settings(self, settings: Dict[str, Any]) -> Dict[str, Any]:
        """Hook: complete the keyword arguments of the scorer."""
        return settings

    def score(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        """The registered scorer on ``examples`` with ``self.cfg`` and ``kwargs``."""
        examples = list(examples)
        validate_examples(examples, f"{type(self).__name__}.score")
        if not self.scorer:
            return {}
        return self.scorer(examples, **self.score_settings(dict(self.cfg, **kwargs)))

    # ------------------------------------------------------------ serialization
    def derived_cfg(self) -> Dict[str, Any]:
        out = {key: self.cfg[key] for key in self.DERIVED if key in self.cfg}
        if self.ARCHITECTURE:
            out["architecture"] = {key: self.cfg[key] for key in self.ARCHITECTURE}
        return out

    def upgrade_cfg(self, saved: Dict[str, Any]) -> Dict[str, Any]:
        """Hook: bring a ``cfg`` saved by an older version up to date."""
        return saved

    def read_cfg(self, path: Path) -> None:
        """Restore the derived state of a saved ``cfg`` and check that the saved
        model's architecture settings are the configured ones (KBE161); the other
        settings (folders saved before the one-config-truth change wrote them all)
        are left to the config."""
        if not path.exists():
            return
        saved = self.upgrade_cfg(srsly.read_json(path))
        arch = saved.get("architecture",
                         {key: saved[key] for key in self.ARCHITECTURE if key in saved})
        differ = [key for key in self.ARCHITECTURE if key in arch and arch[key] != self.cfg[key]]
        if differ:
            raise ValueError(Errors.KBE161.format(
                what="model", path=path.parent, name=self.name,
                saved=", ".join(f"{key} = {arch[key]!r}" for key in differ),
                configured=", ".join(f"{key} = {self.cfg[key]!r}" for key in differ)))
        self.cfg.update({key: saved[key] for key in self.DERIVED if key in saved})

    def serializers(self) -> Dict[str, Callable[[Path], None]]:
        """Writers of the component folder besides ``cfg``: ``{name: writer(path)}``."""
        return {}

    def deserializers(self) -> Dict[str, Callable[[Path], None]]:
        """Readers of the component folder besides ``cfg``: ``{name: reader(path)}``."""
        return {}

    def before_save(self) -> None:
        """Hook: raise if there is nothing to save (e.g. not initialized)."""

    def after_load(self, path: Path) -> None:
        """Hook: checks and derived objects once every reader ran."""

    def to_disk(self, path: PathLike, *, exclude: Iterable[str] = tuple()) -> None:
        self.before_save()
        writers: Dict[str, Callable[[Path], None]] = {
            "cfg": lambda p: srsly.write_json(p, self.derived_cfg())}
        writers.update(self.serializers())
        util_to_disk(path, writers, exclude)

    def from_disk(self, path: PathLike, *, exclude: Iterable[str] = tuple()) -> "KBPipe":
        path = ensure_path(path)
        readers: Dict[str, Callable[[Path], None]] = {"cfg": self.read_cfg}
        readers.update(self.deserializers())
        util_from_disk(path, readers, exclude)
        self.after_load(path)
        return self

    def after_bytes(self, path: Path) -> None:
        """Hook after ``from_bytes`` read the temporary folder ``path``: load into
        memory whatever ``from_disk`` memory-mapped from it."""

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        from ..core.torch_io import folder_to_bytes

        return folder_to_bytes(lambda tmp: self.to_disk(tmp, exclude=exclude))

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "KBPipe":
        from ..core.torch_io import folder_from_bytes

        def read(tmp: Path) -> None:
            self.from_disk(tmp, exclude=exclude)
            self.after_bytes(tmp)

        folder_from_bytes(bytes_data, read)
        return self


def update_settings(nlp: Language, overrides: Dict[str, Any]) -> None:
    """Change component settings of a loaded pipeline, given as spaCy config
    overrides (``{"components.<name>.<setting>": value}``, the form of
    ``spacy.cli._util.parse_config_overrides``), in ``nlp.config`` (so
    ``nlp.to_disk`` saves them) and on the live components (their ``cfg``, checked
    by their ``check_settings``)."""
    tree = dot_to_dict(overrides)
    unknown = [key for key in tree if key != "components"]
    if unknown:
        raise ValueError(Errors.KBE160.format(
            key=unknown[0], name="<pipeline>",
            why="only component settings (components.<name>.<setting>) can change here"))
    for name, settings in tree.get("components", {}).items():
        if name not in nlp.component_names:
            raise ValueError(Errors.KBE160.format(
                key=name, name="<pipeline>",
                why=f"no such component (the pipeline has: {', '.join(nlp.component_names)})"))
        pipe = nlp.get_pipe(name)
        config = nlp.get_pipe_config(name)
        cfg = getattr(pipe, "cfg", None)
        for key, value in settings.items():
            if key not in config or key == "factory" or cfg is None or key not in cfg:
                raise ValueError(Errors.KBE160.format(
                    key=key, name=name, why="it has no such setting in its config"))
        old = dict(cfg)
        cfg.update(settings)
        try:
            getattr(pipe, "check_settings", lambda: None)()
        except Exception:
            cfg.clear()
            cfg.update(old)
            raise
        config.update(settings)
