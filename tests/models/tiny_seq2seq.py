"""A tiny, randomly initialised encoder-decoder (BERT layers, MiniLM's tokenizer) saved
as a Hugging Face model folder: the stand-in for any seq2seq model path in tests."""
from pathlib import Path
from typing import Union


def build_tiny_seq2seq(path: Union[str, Path], *, hidden: int = 32, layers: int = 2,
                       max_positions: int = 1024, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, EncoderDecoderConfig, EncoderDecoderModel

    from spacy_kbnlp.encoders.hf import resolve_model_path

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(resolve_model_path(None), local_files_only=True)
    kw = dict(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
              num_attention_heads=2, intermediate_size=2 * hidden,
              max_position_embeddings=max_positions)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**kw), BertConfig(is_decoder=True, add_cross_attention=True, **kw))
    config.decoder_start_token_id = tok.cls_token_id
    config.eos_token_id = tok.sep_token_id
    config.pad_token_id = tok.pad_token_id
    model = EncoderDecoderModel(config=config).eval()
    path = Path(path)
    model.save_pretrained(str(path), safe_serialization=True)
    tok.save_pretrained(str(path))
    return path
