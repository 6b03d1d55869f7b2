"""Tiny randomly initialised Hugging Face models built from a config (no hub), with a
tiny WordPiece tokenizer over a small English vocabulary, saved as model directories.
The small vocabulary keeps them fast and lets them overfit a few sentences in seconds."""
import string
from pathlib import Path
from typing import Dict

WORDS = """the a an of in on at for to by and or is was were lived live killed kill worked work based
born who his her their with near from had has later home shot met married founded this that it
alan turing london marie curie paris ada lovelace tim berners lee cern grace hopper navy booth
lincoln washington geneva oswald kennedy dallas niels bohr copenhagen ann bob rome oslo cy bonn
university manchester staff only nobody here cat dog sat mat barked postman stocks fell sharply
today relation relations no none org loc peop ent nominal based_in located located_in live_in
work_for orgbased_in e1 e2 text answer extract entities marked labels entity head tail label""".split()


def build_tokenizer(path: Path):
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = special + chars + ["##" + c for c in string.ascii_lowercase + string.digits] + WORDS
    seen, uniq = set(), []
    for tok in vocab:
        if tok not in seen:
            seen.add(tok)
            uniq.append(tok)
    (path / "vocab.txt").write_text("\n".join(uniq) + "\n", encoding="utf8")
    return BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)


def build_tiny_models(root: Path, seed: int = 0) -> Dict[str, str]:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    tok = build_tokenizer(root / "tokenizer")
    v = len(tok)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=v, n_embd=32, n_layer=2, n_head=2, n_positions=512,
                                     bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id))
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=v, d_model=32, d_ff=64, d_kv=8, num_layers=2,
                                             num_heads=2, dropout_rate=0.0,
                                             decoder_start_token_id=tok.pad_token_id,
                                             pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id))
    paths = {}
    for name, model in (("gpt", gpt), ("t5", t5)):
        model.save_pretrained(root / name, safe_serialization=True)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths
