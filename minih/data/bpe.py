"""A byte-level BPE tokenizer that minih trains on its own corpus (the papers' choice of tokens).

Byte-pair encoding (Sennrich et al. 2016; byte-level as in GPT-2): start from the
256 byte values and repeatedly merge the most frequent adjacent pair of tokens into
a new token, until the vocabulary has `vocab_size` tokens. Token ids:

    0 .. 255            the bytes themselves (so any byte string can be encoded,
                        including invalid UTF-8, and byte 0 - the NUL byte, which text
                        does not contain - stays free for the BOS of the prefix test)
    256 + i             merges[i] = (a, b): the concatenation of tokens a and b

Pre-tokenization. Before counting pairs the text is cut into chunks by a regex
(SPLIT_PATTERN, GPT-2's pattern on bytes): words with an optional leading space,
numbers, runs of punctuation, runs of whitespace. Merges never cross a chunk
boundary, so a token never holds the end of one word and the start of the next
(" the" and " cat" become tokens, never "e c"), the vocabulary is spent on reusable
pieces, and training only needs the distinct chunks with their counts (74k distinct
chunks for the 2.7M chunks of the stdlib's 12 MB). Two changes from GPT-2, for code:
`_` counts as a letter (identifiers like `__init__` or `read_bytes` stay one chunk)
and so does every byte >= 0x80 (UTF-8 letters stay with their word; an invalid byte
is just another letter). The pattern's branches cover every byte, so the chunks
always concatenate back to the input (tested on random bytes).

Training (train_merges) is the textbook algorithm, made incremental: keep the count of
every adjacent pair over the distinct chunks (weighted by how often each chunk
occurs) and, for each pair, the chunks that contain it; at each step take the most
frequent pair (ties: the smallest (a, b), so training is deterministic), and rewrite
only the chunks that contain it, updating the counts of their pairs. A heap with lazy
deletion finds the most frequent pair. A few seconds for 4096 tokens on the stdlib.

Encoding a chunk (encode_chunk_reference) repeats: find the adjacent pair with the
lowest merge index, merge it everywhere in the chunk; stop when no pair is a merge.
This reproduces the training segmentation exactly. Encoding a corpus encodes each
distinct chunk once (a Numba kernel for all of them, checked equal to the reference)
and copies the codes to every occurrence.

Caching: training the merges and encoding the corpus take seconds, so both are kept
on disk under cache_dir (default $MINIH_CACHE_DIR, else $XDG_CACHE_HOME/minih, else
~/.cache/minih), in files named by a SHA-256 of everything they depend on: the bytes
of the text, the vocabulary size, the split pattern and FORMAT. Changing the corpus or
a setting changes the name, so a stale file is never read.
"""
from __future__ import annotations

import hashlib
import heapq
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

# GPT-2's split (contractions | letters | digits | other | whitespace), on bytes,
# with `_` and bytes >= 0x80 counted as letters (see the module docstring).
SPLIT_PATTERN = (rb"'(?:s|t|re|ve|m|ll|d)| ?[A-Za-z_\x80-\xff]+| ?[0-9]+"
                 rb"| ?[^\sA-Za-z0-9_\x80-\xff]+|\s+(?!\S)|\s+")
FORMAT = 1                  # bump when the meaning of the cached files changes


def pretokenize(data: bytes, pattern: bytes = SPLIT_PATTERN) -> list[bytes]:
    """The chunks of `data` (merges never cross their boundaries); b"".join(chunks) == data."""
    return re.findall(pattern, data)


# ----------------------------------------------------------------------------- training


def train_merges(chunk_counts: dict[bytes, int], vocab_size: int) -> np.ndarray:
    """BPE merges [M, 2] int32 learned from {chunk: count}; M <= vocab_size - 256.

    Fewer merges come back if the chunks run out of pairs to merge.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be >= 256 (the bytes), got {vocab_size}")
    items = sorted(chunk_counts.items())                        # fixed order: deterministic
    words = [list(chunk) for chunk, _ in items]                 # each chunk as token ids
    counts = [n for _, n in items]
    pair_count: dict[tuple[int, int], int] = Counter()
    where: dict[tuple[int, int], set[int]] = defaultdict(set)   # pair -> chunks holding it
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_count[pair] += counts[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pair_count.items()]       # most frequent first,
    heapq.heapify(heap)                                         # then the smallest pair
    merges = []
    while len(merges) < vocab_size - 256 and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg or neg == 0:         # stale heap entry
            continue
        new = 256 + len(merges)
        merges.append(pair)
        changed = set()
        for i in where.pop(pair):
            w, n = words[i], counts[i]
            for p in zip(w, w[1:]):                             # forget the chunk's pairs ...
                pair_count[p] -= n
                changed.add(p)
            w = words[i] = _merge(w, pair, new)
            for p in zip(w, w[1:]):                             # ... and count its new ones
                pair_count[p] += n
                where[p].add(i)
                changed.add(p)
        for p in changed:
            c = pair_count[p]
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                pair_count.pop(p, None)
                where.pop(p, None)
    return np.array(merges, dtype=np.int32).reshape(-1, 2)


def _merge(word: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """`word` with every occurrence of `pair` (left to right, not overlapping) replaced by `new`."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


# ----------------------------------------------------------------------------- encoding


def encode_chunk_reference(chunk: bytes, ranks: dict[tuple[int, int], int]) -> list[int]:
    """The tokens of one chunk: merge the lowest-ranked adjacent pair until none is a merge.

    ranks: (a, b) -> merge index i (the pair becomes token 256 + i).
    """
    word = list(chunk)
    while len(word) > 1:
        best = min(zip(word, word[1:]), key=lambda p: ranks.get(p, 1 << 62))
        if best not in ranks:
            break
        word = _merge(word, best, 256 + ranks[best])
    return word


def _numba_encoder():
    """The Numba kernel that encodes many chunks at once (compiled on first use)."""
    import numba

    @numba.njit(cache=True)
    def encode_chunks(flat, starts, keys, ranks, n_vocab, out, out_len):
        # flat uint8 [S]: chunks back to back; chunk c is flat[starts[c]:starts[c+1]]
        # keys int64 [M]: a * n_vocab + b of every merge, sorted; ranks int64 [M]: its index
        # out int32 [S]: chunk c's tokens go to out[starts[c]:], out_len[c] of them
        n_chunks = len(starts) - 1
        for c in range(n_chunks):
            s, e = starts[c], starts[c + 1]
            n = e - s
            for j in range(n):
                out[s + j] = flat[s + j]
            while n > 1:
                best_rank, best_j = -1, -1
                for j in range(n - 1):                     # lowest-ranked adjacent pair
                    key = out[s + j] * np.int64(n_vocab) + out[s + j + 1]
                    k = np.searchsorted(keys, key)
                    if k < len(keys) and keys[k] == key:
                        r = ranks[k]
                        if best_rank < 0 or r < best_rank:
                            best_rank, best_j = r, j
                if best_rank < 0:
                    break
                a, b = out[s + best_j], out[s + best_j + 1]
                new = 256 + best_rank
                w, j = 0, 0                                # merge it everywhere, in place
                while j < n:
                    if j + 1 < n and out[s + j] == a and out[s + j + 1] == b:
                        out[s + w] = new
                        j += 2
                    else:
                        out[s + w] = out[s + j]
                        j += 1
                    w += 1
                n = w
            out_len[c] = n

    return encode_chunks


_ENCODER = None


def encode_chunks(chunks: list[bytes], merges: np.ndarray) -> list[np.ndarray]:
    """Tokens (int32 arrays) of every chunk, by the Numba kernel; equal to the reference."""
    global _ENCODER
    if _ENCODER is None:
        _ENCODER = _numba_encoder()
    lengths = np.array([len(c) for c in chunks], dtype=np.int64)
    starts = np.zeros(len(chunks) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    flat = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    n_vocab = 256 + len(merges)
    keys = merges[:, 0].astype(np.int64) * n_vocab + merges[:, 1]
    order = np.argsort(keys, kind="stable")
    out = np.zeros(len(flat), dtype=np.int32)
    out_len = np.zeros(len(chunks), dtype=np.int64)
    _ENCODER(flat, starts, keys[order], order.astype(np.int64), n_vocab, out, out_len)
    return [out[s:s + n] for s, n in zip(starts[:-1], out_len)]


class BPE:
    """A trained byte-level BPE: encode bytes -> int32 tokens, decode tokens -> bytes."""

    def __init__(self, merges, pattern: bytes = SPLIT_PATTERN):
        self.merges = np.asarray(merges, dtype=np.int32).reshape(-1, 2)    # [M, 2]
        self.pattern = pattern
        self.ranks = {(int(a), int(b)): i for i, (a, b) in enumerate(self.merges)}
        self.vocab = [bytes([i]) for i in range(256)]                       # token -> bytes
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])

    @property
    def n_tokens(self) -> int:
        return 256 + len(self.merges)

    def encode(self, data: bytes, numba: bool = True) -> np.ndarray:
        """int32 tokens of `data`; each distinct chunk is encoded once."""
        chunks = pretokenize(bytes(data), self.pattern)
        index: dict[bytes, int] = {}
        ids = np.array([index.setdefault(c, len(index)) for c in chunks], dtype=np.int64)
        distinct = list(index)
        if numba:
            codes = encode_chunks(distinct, self.merges)
        else:
            codes = [np.array(encode_chunk_reference(c, self.ranks), dtype=np.int32) for c in distinct]
        if not codes:
            return np.zeros(0, dtype=np.int32)
        lengths = np.array([len(c) for c in codes], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        flat = np.concatenate(codes)
        # token k of the output is flat[starts[ids[j]] + offset within occurrence j]
        occ_len = lengths[ids]                                               # [n_chunks]
        first = np.repeat(starts[ids] - np.concatenate([[0], np.cumsum(occ_len)[:-1]]), occ_len)
        return flat[first + np.arange(occ_len.sum())]

    def decode(self, tokens) -> bytes:
        return b"".join(self.vocab[t] for t in np.asarray(tokens).ravel())

    def token_str(self, t: int) -> str:
        """A printable form of token t (for docs and debugging)."""
        return self.vocab[t].decode("utf-8", errors="backslashreplace")


def train_bpe(data: bytes, vocab_size: int, pattern: bytes = SPLIT_PATTERN) -> BPE:
    """A BPE with (up to) vocab_size tokens trained on `data` (no cache: see cached_bpe)."""
    return BPE(train_merges(Counter(pretokenize(data, pattern)), vocab_size), pattern)


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """$MINIH_CACHE_DIR, else $XDG_CACHE_HOME/minih, else ~/.cache/minih."""
    if os.environ.get("MINIH_CACHE_DIR"):
        return Path(os.environ["MINIH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minih"


def fingerprint(*parts) -> str:
    """SHA-256 (hex, 24 chars) of the parts: bytes as they are, anything else by repr."""
    h = hashlib.sha256()
    for p in parts:
        b = p if isinstance(p, (bytes, bytearray, memoryview)) else repr(p).encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:24]


def _cached_array(path: Path, compute) -> np.ndarray:
    """np.load(path) if it exists, else compute(), saved atomically to path."""
    if path.exists():
        return np.load(path)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, value)
    os.replace(tmp, path)
    return value


def cached_bpe(data: bytes, vocab_size: int, cache_dir=None, pattern: bytes = SPLIT_PATTERN) -> tuple[BPE, str]:
    """(BPE trained on data, its key); the merges are read from / written to cache_dir."""
    key = fingerprint("bpe", FORMAT, data, vocab_size, pattern)
    path = Path(cache_dir or default_cache_dir()) / f"bpe-{key}.npy"
    merges = _cached_array(path, lambda: train_merges(Counter(pretokenize(data, pattern)), vocab_size))
    return BPE(merges, pattern), key


def cached_encode(bpe: BPE, bpe_key: str, data: bytes, cache_dir=None) -> np.ndarray:
    """bpe.encode(data) as int32, read from / written to cache_dir."""
    key = fingerprint("tokens", FORMAT, bpe_key, data)
    path = Path(cache_dir or default_cache_dir()) / f"tokens-{key}.npy"
    return _cached_array(path, lambda: bpe.encode(data))
