"""Hugging Face model loading for the seq2seq components: a seq2seq model or causal
LM by path or name (offline by default), an encoder-decoder warm-started from an
encoder, tokenizers that take pre-split words, embedding resizing, and the quiet
context for the expected "newly initialized weights" notices."""
from typing import Any, Optional

from ..errors import Errors

ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "distilbert", "deberta-v2",
                 "mpnet", "camembert", "albert")


def warm_start_encoder_decoder(encoder: Optional[str], local_files_only: bool = True, *,
                               decoder_layers: Optional[int] = None):
    """An ``EncoderDecoderModel`` whose encoder and decoder both start from ``encoder``
    (decoder with causal self-attention and new cross-attention; its first
    ``decoder_layers`` layers, None = all), and its tokenizer."""
    from transformers import AutoTokenizer, EncoderDecoderModel

    from ..encoders.hf import resolve_model_path

    path = resolve_model_path(encoder)
    config = _load_config(path, local_files_only)
    if getattr(config, "is_encoder_decoder", False) or config.model_type not in ENCODER_TYPES:
        raise ValueError(Errors.KBE251.format(
            path=path, model_type=config.model_type,
            why=f"`warm_start` needs an encoder ({', '.join(ENCODER_TYPES)})"))
    extra = {}
    if decoder_layers:
        n_layers = getattr(config, "num_hidden_layers", None)
        if n_layers is not None and not 0 < decoder_layers <= n_layers:
            raise ValueError(Errors.KBE259.format(
                name="decoder_layers", value=decoder_layers,
                why=f"the encoder '{path}' has {n_layers} layers"))
        extra["decoder_num_hidden_layers"] = decoder_layers
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(
        path, path, encoder_local_files_only=local_files_only,
        decoder_local_files_only=local_files_only, **extra)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
    cfg = model.config
    cfg.decoder_start_token_id = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    cfg.eos_token_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    cfg.pad_token_id = tok.pad_token_id
    model.generation_config.decoder_start_token_id = cfg.decoder_start_token_id
    model.generation_config.eos_token_id = cfg.eos_token_id
    model.generation_config.pad_token_id = cfg.pad_token_id
    return model, tok


def _load_config(path: str, local_files_only: bool) -> Any:
    """The model config at ``path`` (KBE252 if there is none), after checking the
    weights of a local folder written by ``encoders.hf.save_hf_dir`` against its
    ``sha256.json`` (KBE159, KBE170, KBE171)."""
    from pathlib import Path

    from transformers import AutoConfig

    from ..core.integrity import check_manifest

    if Path(path).is_dir():
        check_manifest(path)
    try:
        return AutoConfig.from_pretrained(path, local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        raise ValueError(Errors.KBE252.format(path=path, err=err)) from err


def load_seq2seq(path: str, local_files_only: bool = True):
    """A seq2seq model (T5, BART, mT5, encoder-decoder, ...) and its tokenizer, or KBE251."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    config = _load_config(path, local_files_only)
    if not getattr(config, "is_encoder_decoder", False):
        raise ValueError(Errors.KBE251.format(
            path=path, model_type=getattr(config, "model_type", "?"),
            why="`model` needs a sequence-to-sequence model (T5, BART, mT5, an encoder-decoder); "
                "to build one from an encoder, leave `model` empty and give it as `warm_start`"))
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=local_files_only)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(Errors.KBE252.format(path=path, err=err)) from err
    return model, tok


def load_generator(path: str, local_files_only: bool = True):
    """A seq2seq model or causal LM and its tokenizer (KBE251/KBE252 otherwise)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = _load_config(path, local_files_only)
    if getattr(config, "is_encoder_decoder", False):
        return load_seq2seq(path, local_files_only)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=local_files_only)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
    except ValueError as err:
        raise ValueError(Errors.KBE251.format(
            path=path, model_type=getattr(config, "model_type", "?"),
            why="give a sequence-to-sequence model or a causal LM")) from err
    except (OSError, KeyError) as err:
        raise ValueError(Errors.KBE252.format(path=path, err=err)) from err
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return model, tok


def ensure_word_tokenizer(tok: Any, path: Optional[str], local_files_only: bool) -> Any:
    """A tokenizer that accepts pre-split words (byte-level BPE needs add_prefix_space)."""
    try:
        tok(["a", "b"], is_split_into_words=True, add_special_tokens=False)
        return tok
    except (ValueError, TypeError, AssertionError):
        from transformers import AutoTokenizer

        from ..encoders.hf import resolve_model_path

        return AutoTokenizer.from_pretrained(resolve_model_path(path), add_prefix_space=True,
                                             local_files_only=local_files_only)


def resize_embeddings(model: Any, size: int) -> None:
    from transformers import EncoderDecoderModel

    if isinstance(model, EncoderDecoderModel):
        model.encoder.resize_token_embeddings(size, mean_resizing=False)
        model.decoder.resize_token_embeddings(size, mean_resizing=False)
        model.config.encoder.vocab_size = size
        model.config.decoder.vocab_size = size
    else:
        model.resize_token_embeddings(size, mean_resizing=False)


class _quiet_transformers:
    """Silence the expected "newly initialized weights" notices of a warm start."""

    def __enter__(self):
        from transformers.utils import logging

        self._level = logging.get_verbosity()
        logging.set_verbosity_error()
        return self

    def __exit__(self, *exc):
        from transformers.utils import logging

        logging.set_verbosity(self._level)

