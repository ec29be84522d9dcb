"""Real text as BPE tokens (`bpe`): the stdlib, its prose, its tests, or files you name.

The same corpora as text.py (read from disk, split into training and validation by a
hash of each file's path, a single file by position), cut into tokens by a byte-level
BPE that minih trains on the training split itself (minih/data/bpe.py) - the papers'
kind of tokens, without downloading a tokenizer. Merges and encoded text are cached
on disk (bpe.default_cache_dir()), so only the first run of a setting pays for them.

Corpora (`corpus`):
    "stdlib"        the stdlib's .py files without test directories (12 MB): code,
                    comments, docstrings, and the English reference of
                    pydoc_data/topics.py
    "stdlib+tests"  the same plus the test directories (32 MB): natural code that
                    repeats itself much more (the same calls, names and literals again
                    and again in one file)
    "prose"         pydoc_data/topics.py alone (0.76 MB of English prose about Python,
                    split by position)
    `path` set      any file or folder of text (as the `text` source); `corpus` is ignored

Sampling: B windows of T consecutive tokens at uniform random starts in the training
tokens (files back to back); the evaluation set is windows of the validation tokens.

Shape legend: B = batch, T = positions
"""
from __future__ import annotations

import functools
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from .base import check_request, check_rng, random_windows
from .bpe import BPE, cached_bpe, cached_encode
from .text import _load_corpus, _stdlib_files, _text_files

CORPORA = ("stdlib", "stdlib+tests", "prose")
# what each corpus is, in a few words (reports say it)
CORPUS_WHAT = {"stdlib": "the Python standard library's code, comments and docstrings",
               "stdlib+tests": "the Python standard library's code and its tests",
               "prose": "the English prose of Python's language reference"}
PROSE_FILE = "pydoc_data/topics.py"


@functools.lru_cache(maxsize=4)
def _encoded(root: str, files: tuple[str, ...], val_fraction: float, split_seed: int,
             vocab_size: int, cache_dir: str):
    """(BPE, its key, train int32 tokens, validation int32 tokens, facts) - once per process."""
    train, val, facts = _load_corpus(root, files, val_fraction, split_seed)
    train_bytes, val_bytes = train.tobytes(), val.tobytes()
    bpe, key = cached_bpe(train_bytes, vocab_size, cache_dir or None)
    train_tokens = cached_encode(bpe, key, train_bytes, cache_dir or None)
    val_tokens = cached_encode(bpe, key, val_bytes, cache_dir or None)
    facts = {**facts, "train_bytes": len(train_bytes), "validation_bytes": len(val_bytes)}
    return bpe, key, train_tokens, val_tokens, facts


@dataclass(frozen=True)
class BPEText:
    name: ClassVar[str] = "bpe"
    corpus: str = "stdlib"       # "stdlib", "stdlib+tests" or "prose" (see the module docstring)
    path: str = ""               # a file or folder of your own text; replaces `corpus`
    vocab_size: int = 2048       # tokens: 256 bytes + (vocab_size - 256) merges
    val_fraction: float = 0.1    # share of files (of bytes, for one file) held out
    split_seed: int = 0          # changes which files are held out
    cache_dir: str = ""          # where merges and tokens are cached; "" = bpe.default_cache_dir()

    def __post_init__(self):
        if self.corpus not in CORPORA:
            raise ValueError(f"bpe data: corpus must be one of {CORPORA}, got {self.corpus!r}")
        if self.path and not Path(self.path).exists():
            raise ValueError(f"bpe data: path {self.path!r} does not exist")
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) \
                or not 257 <= self.vocab_size <= 65536:
            raise ValueError(f"bpe data: vocab_size must be an int in [257, 65536], got {self.vocab_size!r}")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0 < self.val_fraction < 1:
            raise ValueError(f"bpe data: val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int):
            raise ValueError(f"bpe data: split_seed must be an int, got {self.split_seed!r}")

    @property
    def d_vocab(self) -> int:
        return self.vocab_size

    def _root_and_files(self) -> tuple[Path, list[str]]:
        if self.path:
            return _text_files(str(Path(self.path).resolve()))
        if self.corpus == "prose":
            return Path(sysconfig.get_paths()["stdlib"]), [PROSE_FILE]
        return _stdlib_files(self.corpus == "stdlib+tests")

    def _data(self):
        root, files = self._root_and_files()
        if not files:
            raise ValueError(f"bpe data: no text files found under {root}")
        return _encoded(str(root), tuple(files), float(self.val_fraction), int(self.split_seed),
                        int(self.vocab_size), str(self.cache_dir))

    def tokenizer(self) -> BPE:
        """The trained BPE (to decode tokens: source.tokenizer().decode(tokens))."""
        return self._data()[0]

    def token_counts(self) -> np.ndarray:
        """How often each token occurs in the training split, int64 [d_vocab]."""
        return np.bincount(self._data()[2], minlength=self.d_vocab)

    def _windows(self, data: np.ndarray, rng, batch: int, seq_len: int, what: str) -> np.ndarray:
        return random_windows(data, rng, batch, seq_len, what, "bpe", "tokens")

    def sample(self, rng, batch: int, seq_len: int) -> np.ndarray:
        """B random windows of the training tokens, int64 [B,T]."""
        rng = check_rng(rng)
        check_request(self, batch, seq_len)
        return self._windows(self._data()[2], rng, batch, seq_len, "training")

    def eval_set(self, n: int, seq_len: int, seed: int) -> np.ndarray:
        """n windows of the validation tokens at starts drawn with `seed`, int64 [N,T]."""
        check_request(self, n, seq_len)
        return self._windows(self._data()[3], np.random.default_rng(seed), n, seq_len, "validation")

    def describe(self) -> dict:
        root, _ = self._root_and_files()
        bpe, key, train, val, facts = self._data()
        what = f"text files under {root}" if self.path else CORPUS_WHAT[self.corpus]
        return {"name": self.name, **{k: getattr(self, k) for k in self.__dataclass_fields__},
                "what": f"{what}, as byte-level BPE tokens trained on it ({self.vocab_size} tokens)",
                "root": str(root), "tokens": "bpe", "bpe_key": key, "merges": len(bpe.merges),
                "train_tokens": len(train), "validation_tokens": len(val),
                "bytes_per_token": round(facts["train_bytes"] / max(1, len(train)), 3),
                "python": sys.version.split()[0], **facts}
