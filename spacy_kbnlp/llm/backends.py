"""Registered LLM backends: callables ``prompts -> [LLMResult]``.

A backend never raises for one failed prompt: each result is ``{"text": str or None,
"error": str or None}``, so a component can parse what came back and count the rest
on ``doc._.llm_errors``. Configuration errors (a missing model path, a missing API
key) raise coded errors on first use. Nothing connects or loads at construction.

* ``spacy_kbnlp.HFLocalLLM.v1``: a local Hugging Face causal LM or seq2seq model by
  path (greedy generation; ``score`` gives RUIE's average token log-likelihood).
* ``spacy_kbnlp.OpenAICompatLLM.v1``: any OpenAI-compatible ``/chat/completions``
  endpoint (base URL, model, key from an environment variable), with a timeout per
  request, bounded retries with exponential backoff on connection errors, timeouts,
  429/5xx and unreadable answers, at most ``concurrency`` requests in flight, and
  prompts sent in batches of ``batch_size``.
* ``spacy_kbnlp.SpacyLLMModel.v1``: any model registered in spacy-llm's
  ``llm_models`` registry (when spacy-llm is installed).
"""
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence

from spacy.util import registry

from ..core.device import place
from ..core.torch_io import get_device
from ..errors import Errors

LLMResult = Dict[str, Optional[str]]


def ok(text: str) -> LLMResult:
    return {"text": text, "error": None}


def failed(error: str) -> LLMResult:
    return {"text": None, "error": error}


# --- local Hugging Face models ---------------------------------------------------
class HFLocalBackend:
    """A local causal LM or seq2seq model (``AutoModelForCausalLM`` /
    ``AutoModelForSeq2SeqLM``, chosen from its config), loaded on first use."""

    def __init__(self, path: str, *, max_new_tokens: int = 128, batch_size: int = 4,
                 max_length: int = 1024, device: Optional[str] = None):
        self.path = str(path)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.max_length = max_length
        self._device = device
        self._model = None
        self._tokenizer = None
        self.is_seq2seq = False

    def load(self) -> "HFLocalBackend":
        if self._model is not None:
            return self
        from ..models.hf_loading import load_generator

        model, tokenizer = load_generator(self.path)  # KBE251/KBE252 for unusable paths
        self.is_seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.sep_token
        self._tokenizer = tokenizer
        self._model = model.to(get_device(self._device)).eval()
        return self

    @property
    def model(self):
        """The model, on the current device (:mod:`..core.device`)."""
        model = self.load()._model
        place([model], get_device(self._device))
        return model

    @property
    def tokenizer(self):
        return self.load()._tokenizer

    def __call__(self, prompts: Sequence[str]) -> List[LLMResult]:
        return [ok(t) for t in self.generate(prompts)]

    def generate(self, prompts: Sequence[str]) -> List[str]:
        """Greedy continuations of ``prompts`` (new text only)."""
        import torch

        model, tok = self.model, self.tokenizer
        out: List[str] = []
        for b in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[b: b + self.batch_size])
            tok.padding_side = "left" if not self.is_seq2seq else "right"
            enc = tok(chunk, return_tensors="pt", padding=True, truncation=True,
                      max_length=self.max_length, return_token_type_ids=False).to(model.device)
            with torch.inference_mode():
                gen = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
            if not self.is_seq2seq:
                gen = gen[:, enc["input_ids"].shape[1]:]
            out.extend(tok.batch_decode(gen, skip_special_tokens=True))
        return out

    def score(self, prompts: Sequence[str], targets: Sequence[str]) -> List[float]:
        """RUIE's preference signal: the average token log-likelihood of each target
        given its prompt, ``mean_t log p(y_t | prompt, y_<t)``."""
        import torch

        model, tok = self.model, self.tokenizer
        scores: List[float] = []
        for b in range(0, len(prompts), self.batch_size):
            ps, ts = list(prompts[b: b + self.batch_size]), list(targets[b: b + self.batch_size])
            with torch.inference_mode():
                if self.is_seq2seq:
                    enc = tok(ps, return_tensors="pt", padding=True, truncation=True,
                              max_length=self.max_length, return_token_type_ids=False).to(model.device)
                    lab = tok(text_target=ts, return_tensors="pt", padding=True).input_ids.to(model.device)
                    lab = lab.masked_fill(lab == tok.pad_token_id, -100)
                    logits = model(**enc, labels=lab).logits
                    targets_ids = lab
                else:
                    ids, tgt = [], []
                    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
                    for p, t in zip(ps, ts):
                        p_ids = tok(p, add_special_tokens=True)["input_ids"]
                        t_ids = tok(t, add_special_tokens=False)["input_ids"] + (
                            [eos] if eos is not None else [])
                        p_ids = p_ids[-max(1, self.max_length - len(t_ids)):]
                        ids.append(p_ids + t_ids)
                        tgt.append([-100] * len(p_ids) + t_ids)
                    width = max(len(x) for x in ids)
                    pad = tok.pad_token_id
                    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=model.device)
                    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=model.device)
                    lab = torch.tensor([x + [-100] * (width - len(x)) for x in tgt], device=model.device)
                    logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
                    targets_ids = lab[:, 1:]
                logp = torch.log_softmax(logits.float(), -1)
                valid = targets_ids != -100
                tok_lp = logp.gather(-1, targets_ids.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid
                scores.extend((tok_lp.sum(-1) / valid.sum(-1).clamp(min=1)).tolist())
        return scores


@registry.misc("spacy_kbnlp.HFLocalLLM.v1")
def create_hf_local_llm(path: str, max_new_tokens: int = 128, batch_size: int = 4,
                        max_length: int = 1024, device: Optional[str] = None) -> HFLocalBackend:
    """A local Hugging Face causal LM or seq2seq model directory (loaded on first use)."""
    return HFLocalBackend(path, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          max_length=max_length, device=device)


# --- OpenAI-compatible HTTP endpoints ---------------------------------------------
RETRY_STATUS = (408, 409, 425, 429, 500, 502, 503, 504)


class OpenAICompatBackend:
    """Chat completions over HTTP; see the module doc. ``sleep`` is injectable for tests."""

    def __init__(self, base_url: str, model: str, *, api_key_env: Optional[str] = "OPENAI_API_KEY",
                 timeout: float = 30.0, max_tries: int = 3, backoff: float = 1.0,
                 max_backoff: float = 20.0, concurrency: int = 4, batch_size: int = 16,
                 temperature: float = 0.0, max_tokens: int = 256,
                 system_prompt: Optional[str] = None, sleep: Callable[[float], None] = time.sleep):
        for name, value, good in (("timeout", timeout, timeout > 0), ("max_tries", max_tries, max_tries >= 1),
                                  ("concurrency", concurrency, concurrency >= 1),
                                  ("batch_size", batch_size, batch_size >= 1)):
            if not good:
                raise ValueError(Errors.KBE312.format(value=value, setting=name, why="must be positive"))
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_tries = int(max_tries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.concurrency = int(concurrency)
        self.batch_size = int(batch_size)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.sleep = sleep
        self.n_requests = 0  # attempts made (for logs and tests)

    def _headers(self) -> Dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(Errors.KBE307.format(env=self.api_key_env, url=self.url))
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _payload(self, prompt: str) -> bytes:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature,
                           "max_tokens": self.max_tokens}).encode("utf8")

    @staticmethod
    def _answer(body: bytes) -> str:
        data = json.loads(body.decode("utf8"))
        content = data["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise ValueError(f"content is {type(content).__name__}, not a string")
        return content

    def _one(self, prompt: str, headers: Dict[str, str]) -> LLMResult:
        err = ""
        for attempt in range(self.max_tries):
            if attempt:
                self.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            self.n_requests += 1
            req = urllib.request.Request(self.url, data=self._payload(prompt), headers=headers,
                                         method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    body = resp.read()
            except urllib.error.HTTPError as e:
                err = f"HTTP {e.code}"
                if e.code in RETRY_STATUS:
                    continue
                return failed(err)  # 4xx other than the retryable ones: no point retrying
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                err = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
                continue
            try:
                return ok(self._answer(body))
            except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as e:
                err = f"unreadable answer ({type(e).__name__}: {str(e)[:80]})"
                continue
        return failed(Errors.KBE308.format(url=self.url, tries=self.max_tries, err=err))

    def __call__(self, prompts: Sequence[str]) -> List[LLMResult]:
        if not prompts:
            return []
        headers = self._headers()
        out: List[LLMResult] = []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for b in range(0, len(prompts), self.batch_size):
                chunk = prompts[b: b + self.batch_size]
                out.extend(pool.map(lambda p: self._one(p, headers), chunk))
        return out


@registry.misc("spacy_kbnlp.OpenAICompatLLM.v1")
def create_openai_compat_llm(base_url: str, model: str, api_key_env: Optional[str] = "OPENAI_API_KEY",
                             timeout: float = 30.0, max_tries: int = 3, backoff: float = 1.0,
                             max_backoff: float = 20.0, concurrency: int = 4, batch_size: int = 16,
                             temperature: float = 0.0, max_tokens: int = 256,
                             system_prompt: Optional[str] = None) -> OpenAICompatBackend:
    """An OpenAI-compatible chat-completions endpoint (no request before the first call)."""
    return OpenAICompatBackend(base_url, model, api_key_env=api_key_env, timeout=timeout,
                               max_tries=max_tries, backoff=backoff, max_backoff=max_backoff,
                               concurrency=concurrency, batch_size=batch_size,
                               temperature=temperature, max_tokens=max_tokens,
                               system_prompt=system_prompt)


# --- spacy-llm adapter ---------------------------------------------------------------
class SpacyLLMBackend:
    """Any spacy-llm model (``registry.llm_models``), built on first use."""

    def __init__(self, name: str, config: Optional[Dict[str, Any]] = None):
        self.name = name
        self.config = dict(config or {})
        self._model = None

    def load(self):
        if self._model is None:
            try:
                import spacy_llm  # noqa: F401  (registers its models)
            except ImportError as err:
                raise ImportError(Errors.KBE311.format(model=self.name)) from err
            self._model = registry.get("llm_models", self.name)(**self.config)
        return self._model

    def __call__(self, prompts: Sequence[str]) -> List[LLMResult]:
        model = self.load()
        try:  # spacy-llm >= 0.7: one list of prompts (shards) per doc in, one list of answers out
            answers = list(model([[p] for p in prompts]))
        except Exception as err:  # the model's own errors become per-prompt failures
            return [failed(f"{type(err).__name__}: {err}") for _ in prompts]
        out = []
        for ans in answers:
            ans = list(ans) if not isinstance(ans, str) else [ans]
            out.append(ok("\n".join(str(a) for a in ans)))
        return out


@registry.misc("spacy_kbnlp.SpacyLLMModel.v1")
def create_spacy_llm_model(name: str, config: Optional[Dict[str, Any]] = None) -> SpacyLLMBackend:
    """A spacy-llm model such as ``spacy.GPT-4.v3`` (needs spacy-llm installed)."""
    return SpacyLLMBackend(name, config)
