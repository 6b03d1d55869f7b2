"""Tiny randomly initialised Hugging Face models built from a config (no hub), with
the bundled MiniLM WordPiece tokenizer, saved as model directories."""
from pathlib import Path
from typing import Dict


def build_tiny_models(root: Path, seed: int = 0) -> Dict[str, str]:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    from spacy_kbnlp.encoders.hf import resolve_model_path

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(resolve_model_path(None), local_files_only=True)
    v = len(tok)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=v, n_embd=32, n_layer=2, n_head=2, n_positions=256,
                                     bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id))
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=v, d_model=32, d_ff=64, d_kv=8, num_layers=2,
                                             num_heads=2, decoder_start_token_id=tok.pad_token_id,
                                             pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id))
    paths = {}
    for name, model in (("gpt", gpt), ("t5", t5)):
        model.save_pretrained(root / name, safe_serialization=True)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths
