"""How much could an induction head help, beyond bigram statistics? For windows of T tokens
of a corpus: the share of positions where an induction guess (the token that followed the
most recent earlier occurrence of the current token) is right, and the share where it is
right while the corpus' most likely next token after the current one (the bigram guess) is
wrong - the predictions only in-context copying can make.

    PYTHONPATH=. python docs/real_text/repeat_stats.py CORPORA VOCABS CONTEXTS
"""
import sys
import numpy as np
from minih.data import make_source


def stats(tokens, V, T, n=300, seed=0):
    pairs = tokens[:-1].astype(np.int64) * V + tokens[1:]
    big = np.bincount(pairs, minlength=V * V).reshape(V, V).argmax(1)       # bigram guess
    rng = np.random.default_rng(seed)
    hit = hit_only = total = 0
    for s in rng.integers(0, len(tokens) - T, n):
        w = tokens[s:s + T]
        last = {}
        for i in range(1, T):
            prev = int(w[i - 1])
            if prev in last:
                right = w[last[prev] + 1] == w[i]
                hit += right
                hit_only += right and big[prev] != w[i]
            last[prev] = i - 1
            total += 1
    return hit / total, hit_only / total


for corpus in sys.argv[1].split(","):
    for V in map(int, sys.argv[2].split(",")):
        src = make_source("bpe", corpus=corpus, vocab_size=V)
        tok = src._data()[2]
        bpt = src.describe()["bytes_per_token"]
        for T in map(int, sys.argv[3].split(",")):
            h, ho = stats(tok, V, T)
            print(f"{corpus:13s} V={V:5d} T={T:5d} (~{T * bpt:6.0f} bytes): induction right {h:.3f}, "
                  f"right where the bigram guess is wrong {ho:.3f}", flush=True)
