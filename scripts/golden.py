#!/usr/bin/env python3
"""Generate golden reference embeddings for pareil's tests.

    python scripts/golden.py MODEL_DIR OUT_JSON
    (normally: python scripts/golden.py ~/.cache/pareil/models/multilingual-e5-small tests/golden/e5_small.json)

Runs sentence-transformers on MODEL_DIR (CPU, float32, max_seq_length 512) and
writes, for ~30 texts, the exact token ids the forward pass saw and the
resulting sentence embedding (mean pooling over the attention mask, then L2
normalisation).  Each item is embedded alone (batch of 1, no padding) from
the very features returned by the model's own tokenize/preprocess, so the
recorded ids are exactly what the model consumed.  The ids are also checked
against the raw `tokenizers` library reading MODEL_DIR/tokenizer.json with
truncation at 512, which is what the Rust side does.

Output layout:
    {"header": {...}, "items": [{"name", "prefix", "text", "token_ids",
                                 "n_tokens_untruncated", "embedding"}, ...]}

Needs the reference venv (scripts/setup-ref.sh).
"""
import datetime
import hashlib
import json
import os
import sys
import tempfile
import unicodedata

import numpy as np
import torch
import sentence_transformers
import tokenizers
import transformers
from sentence_transformers import SentenceTransformer

MAX_SEQ = 512
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# transformers cannot pick the right tokenizer class for a bare tokenizer.json
# beside a BertModel config (it builds a WordPiece BertTokenizer and fails with
# "Missing [UNK] token").  If the model directory lacks a tokenizer_config.json
# we load it through a temporary overlay that adds this one; the tokenizer.json
# itself is used verbatim (PreTrainedTokenizerFast = tokenizers backend).
TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "model_max_length": MAX_SEQ,
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
    "sep_token": "</s>", "cls_token": "<s>", "pad_token": "<pad>",
    "mask_token": "<mask>", "clean_up_tokenization_spaces": True,
}


def seed_texts():
    """Paragraphs of the seed files (blank-line separated, else one per line)."""
    paras = []
    seeds = os.path.join(REPO, "seeds")
    for f in sorted(os.listdir(seeds)):
        if not f.endswith(".txt"):
            continue
        t = open(os.path.join(seeds, f), encoding="utf-8").read()
        parts = [p.replace("\n", " ") for p in t.split("\n\n")] if "\n\n" in t else t.split("\n")
        paras.append([p.strip() for p in parts if p.strip()])
    return paras


def build_cases():
    seeds = seed_texts()
    flat = [p for ps in seeds for p in ps]
    # a handful of moderately sized French paragraphs from different files
    fr = [ps[min(1, len(ps) - 1)] for ps in seeds][:4]
    long_text = " ".join(flat[:12])
    Q, P = "query: ", "passage: "
    cases = [
        ("fr_seed_0", P, fr[0]),
        ("fr_seed_1", P, fr[1]),
        ("fr_seed_2", P, fr[2]),
        ("fr_seed_3", P, fr[3]),
        ("fr_seed_short_title", P, flat[0]),
        ("fr_query_openai", Q, "Qui a fondé OpenAI ?"),
        ("fr_passage_openai", P, "OpenAI a été fondée en décembre 2015 à San Francisco par Sam Altman, "
                                 "Elon Musk, Greg Brockman, Ilya Sutskever et d'autres chercheurs."),
        ("fr_passage_unrelated", P, "Pour réussir une tarte aux pommes, il faut une pâte brisée, du beurre "
                                    "et des pommes bien mûres."),
        ("en_query", Q, "how much protein should a female eat per day"),
        ("en_passage", P, "As a general guideline, the CDC's average requirement of protein for women "
                          "ages 19 to 70 is 46 grams per day."),
        ("en_sentence", P, "The quick brown fox jumps over the lazy dog while the cat watches from the window."),
        ("de_query", Q, "Wie hoch ist die Zugspitze?"),
        ("de_passage", P, "Die Zugspitze ist mit 2962 Metern über Normalhöhennull der höchste Gipfel "
                          "des Wettersteingebirges und der höchste Berg Deutschlands."),
        ("de_umlauts", P, "Größenordnung, Übermäßig, Straße und Fußgängerüberweg – schöne Grüße aus Köln."),
        ("one_word_query", Q, "bonjour"),
        ("one_word_passage", P, "Haus"),
        ("long_truncated", P, long_text),
        ("nfd_accents", P, "cafe\u0301 de\u0301ja\u0300 vu, a\u0300 l'e\u0301cole, No\u0308el"),
        ("nfc_accents", P, unicodedata.normalize("NFC", "cafe\u0301 de\u0301ja\u0300 vu, a\u0300 l'e\u0301cole, No\u0308el")),
        ("emoji", P, "J'adore ce gâteau 🎂🍰😍 ! Bravo 👍🏽 à toute la famille 👨‍👩‍👧 🇫🇷"),
        ("quotes", P, "« Bonjour », dit-il. L’homme répondit „Guten Tag“ puis “hello” et ‘ciao’."),
        ("nbsp_punct", P, "Attention\u00a0: le prix est de 12\u202f000\u00a0€\u202f! Vraiment\u00a0?"),
        ("compat_chars", P, "ﬁnance ﬂux ①②③ ＡＢＣ １２３ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ™ ½"),
        ("empty_passage", P, ""),
        ("empty_query", Q, ""),
        ("whitespace_only", P, "   \t\n  "),
        ("numbers_urls", P, "Prix : 1 234,56 € au 12/03/2024 — voir https://example.com/path?q=1&lang=fr "
                            "ou écrire à contact@exemple.fr, tél. +33 1 23 45 67 89, v2.0.1, 3.14159."),
        ("mixed_languages", Q, "Le meeting est à 15h, please bring the Unterlagen für das Projekt, grazie mille!"),
        ("non_latin", P, "東京は日本の首都です。 Москва — столица России. القاهرة عاصمة مصر. नमस्ते दुनिया"),
        ("uppercase", Q, "LE CHAT EST NOIR ET LE CHIEN EST BLANC"),
        ("inner_whitespace", P, "ligne un\nligne deux\t\ttabulée   espaces\u200bmultiples\r\nfin"),
    ]
    names = [c[0] for c in cases]
    assert len(set(names)) == len(names)
    return cases


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(model_dir):
    """Returns (model, overlay_dir_or_None)."""
    if os.path.exists(os.path.join(model_dir, "tokenizer_config.json")):
        return SentenceTransformer(model_dir, device="cpu"), None
    tmp = tempfile.mkdtemp(prefix="pareil-golden-")
    for name in os.listdir(model_dir):
        os.symlink(os.path.abspath(os.path.join(model_dir, name)), os.path.join(tmp, name))
    with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
        json.dump(TOKENIZER_CONFIG, f)
    print(f"note: {model_dir} has no tokenizer_config.json; loading through an overlay "
          f"({tmp}) that adds one", file=sys.stderr)
    return SentenceTransformer(tmp, device="cpu"), tmp


def tokenize(model, texts):
    # sentence-transformers >= 6 renamed tokenize() to preprocess()
    fn = getattr(model, "preprocess", None) or model.tokenize
    return fn(texts)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, out_json = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model, overlay = load_model(model_dir)
    model.max_seq_length = MAX_SEQ
    model.eval()
    model.to(torch.float32)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    module_types = [type(m).__name__ for m in model]
    has_normalize = "Normalize" in module_types

    raw_tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    raw_tok.no_padding()
    raw_tok.no_truncation()
    raw_trunc = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    raw_trunc.no_padding()
    raw_trunc.enable_truncation(MAX_SEQ)

    items = []
    cases = build_cases()
    with torch.inference_mode():
        for name, prefix, text in cases:
            full = prefix + text
            feats = tokenize(model, [full])
            ids = feats["input_ids"][0]
            mask = feats["attention_mask"][0]
            assert int(mask.sum()) == len(ids), "batch of one must not be padded"
            token_ids = [int(i) for i in ids.tolist()]
            out = model.forward(dict(feats))
            emb = out["sentence_embedding"][0].to(torch.float64)
            if not has_normalize:
                emb = emb / emb.norm()
            emb = emb.numpy()

            n_untrunc = len(raw_tok.encode(full).ids)
            raw_ids = raw_trunc.encode(full).ids
            if raw_ids != token_ids:
                sys.exit(f"{name}: sentence-transformers ids differ from raw tokenizers ids\n"
                         f"  st : {token_ids[:40]}\n  raw: {raw_ids[:40]}")
            assert len(token_ids) == min(n_untrunc, MAX_SEQ)
            items.append({
                "name": name,
                "prefix": prefix,
                "text": text,
                "token_ids": token_ids,
                "n_tokens_untruncated": n_untrunc,
                "embedding": [float(np.float32(x)) for x in emb],
            })
            print(f"{name:22s} {prefix!r:12s} tokens={len(token_ids):4d} untrunc={n_untrunc:5d} "
                  f"norm={np.linalg.norm(emb):.6f}", file=sys.stderr)

        # Cross-check: the usual batched encode() path (with padding) agrees.
        texts = [c[1] + c[2] for c in cases]
        batched = model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
        single = np.array([it["embedding"] for it in items], dtype=np.float32)
        cos = (batched * single).sum(1)
        print(f"batched-vs-single cosine: min {cos.min():.7f}", file=sys.stderr)
        assert cos.min() > 0.99999, cos

    assert any(it["n_tokens_untruncated"] > MAX_SEQ for it in items), "no text exercises truncation"

    header = {
        "model_dir": os.path.relpath(os.path.abspath(model_dir), REPO)
        if os.path.abspath(model_dir).startswith(REPO + os.sep) else os.path.abspath(model_dir),
        "model_dir_sha256_of_model.safetensors": sha256_file(os.path.join(model_dir, "model.safetensors")),
        "tokenizer_json_sha256": sha256_file(os.path.join(model_dir, "tokenizer.json")),
        "sentence_transformers_version": sentence_transformers.__version__,
        "transformers_version": transformers.__version__,
        "tokenizers_version": tokenizers.__version__,
        "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "device": "cpu",
        "dtype": "float32",
        "max_seq_length": MAX_SEQ,
        "modules": module_types,
        "pooling": "mean over attention mask (incl. <s> and </s>), then L2 normalise",
        "tokenizer_config_overlay": overlay is not None,
        "batching": "each item embedded alone (no padding); batched encode() agrees at cosine > 0.99999",
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
    with open(out_json, "w", encoding="utf-8") as f:
        # one item per line: diffable, and not 12k lines of floats
        f.write('{"header": ' + json.dumps(header, ensure_ascii=False, indent=1) + ',\n "items": [\n')
        f.write(",\n".join(json.dumps(it, ensure_ascii=False) for it in items))
        f.write("\n]}\n")
    print(f"wrote {out_json}: {len(items)} items", file=sys.stderr)


if __name__ == "__main__":
    main()
