"""Real text as bytes: the Python standard library (`stdlib`) or any files you name (`text`).

Tokens are bytes (d_vocab = 256): no tokenizer to download or train, every file
readable, and a token is exactly what the reader sees in the file.

The split into training and validation is by file, decided by a hash of the file's
path relative to the root (and `split_seed`), so it is the same on every run and
machine with the same files, and validation text never appears in training. A
single file is split by position instead (its last `val_fraction` of bytes).

Sampling: a batch is B windows of T consecutive bytes at uniform random starts in
the concatenated training files. The evaluation set is windows of the validation
files at starts drawn with the evaluation seed.

`stdlib` is the default real corpus: the running Python's own library source, read
from disk - present on every install, so it works offline. Test directories are
left out by default (they are 60% of the bytes and much more repetitive).

Shape legend: B = batch, T = positions
"""
from __future__ import annotations

import functools
import hashlib
import numbers
import sys
import sysconfig
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from .base import check_request, check_rng, random_windows

TEST_DIRS = {"test", "tests", "idle_test"}


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\0" not in f.read(8192)


@functools.lru_cache(maxsize=4)
def _load_corpus(root: str, files: tuple[str, ...], val_fraction: float, split_seed: int):
    """(train uint8 [n], validation uint8 [m], facts dict) for these files under root.

    Cached: several sources or runs in one process read the disk once.
    """
    root_path = Path(root)
    if len(files) == 1:                               # one file: split by position
        data = np.frombuffer((root_path / files[0]).read_bytes(), dtype=np.uint8)
        cut = int(round(len(data) * (1 - val_fraction)))
        train, val = data[:cut], data[cut:]
        return train, val, {"files": 1, "split": "by position (one file)"}
    train_parts, val_parts = [], []
    n_val = 0
    for rel in files:
        h = zlib.crc32(f"{split_seed}:{rel}".encode()) % 10_000
        is_val = h < val_fraction * 10_000
        (val_parts if is_val else train_parts).append((root_path / rel).read_bytes())
        n_val += is_val
    train = np.frombuffer(b"".join(train_parts), dtype=np.uint8)
    val = np.frombuffer(b"".join(val_parts), dtype=np.uint8)
    return train, val, {"files": len(files), "validation_files": n_val, "split": "by file (crc32 of path)"}


class _ByteCorpus:
    """Shared sampling code for byte-level corpora; subclasses give root and files."""
    d_vocab: ClassVar[int] = 256

    def _root_and_files(self) -> tuple[Path, list[str]]:
        raise NotImplementedError

    def corpus(self):
        root, files = self._root_and_files()
        if not files:
            raise ValueError(f"{self.name} data: no text files found under {root}")
        return _load_corpus(str(root), tuple(files), float(self.val_fraction), int(self.split_seed))

    def _windows(self, data: np.ndarray, rng, batch: int, seq_len: int, what: str) -> np.ndarray:
        return random_windows(data, rng, batch, seq_len, what, self.name, "bytes")

    def sample(self, rng, batch: int, seq_len: int) -> np.ndarray:
        """B random windows of the training split, int64 [B,T].

        With repeat_fraction > 0, each sequence is, with that probability, replaced by
        a window of L ~ U{repeat_min_len..repeat_max_len} training bytes repeated back
        to back (real text made to reward an induction head; the evaluation set stays
        plain validation text).
        """
        rng = check_rng(rng)
        check_request(self, batch, seq_len)
        tokens = self._windows(self.corpus()[0], rng, batch, seq_len, "training")   # [B,T]
        if self.repeat_fraction > 0:
            hi = min(self.repeat_max_len, seq_len - 2)
            lo = min(self.repeat_min_len, hi)
            chosen = rng.random(batch) < self.repeat_fraction                   # [B]
            L = rng.integers(lo, hi + 1, size=batch)                             # [B]
            pos = np.arange(seq_len)                                             # [T]
            tiled = np.take_along_axis(tokens, pos[None, :] % L[:, None], axis=1)  # [B,T] t[i mod L]
            tokens = np.where(chosen[:, None], tiled, tokens)
        return tokens

    def eval_set(self, n: int, seq_len: int, seed: int) -> np.ndarray:
        """n windows of the validation split at starts drawn with `seed`, int64 [N,T]."""
        check_request(self, n, seq_len)
        return self._windows(self.corpus()[1], np.random.default_rng(seed), n, seq_len, "validation")

    def _check_common(self):
        if isinstance(self.repeat_fraction, bool) or not isinstance(self.repeat_fraction, (int, float)) \
                or not 0 <= self.repeat_fraction <= 1:
            raise ValueError(f"{self.name} data: repeat_fraction must be in [0, 1], got {self.repeat_fraction!r}")
        for f in ("repeat_min_len", "repeat_max_len"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{self.name} data: {f} must be an int >= 1, got {v!r}")
            object.__setattr__(self, f, int(v))           # NumPy integers become ints
        if self.repeat_max_len < self.repeat_min_len:
            raise ValueError(f"{self.name} data: repeat_max_len must be >= repeat_min_len")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0 < self.val_fraction < 1:
            raise ValueError(f"{self.name} data: val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, numbers.Integral):
            raise ValueError(f"{self.name} data: split_seed must be an int, got {self.split_seed!r}")
        object.__setattr__(self, "split_seed", int(self.split_seed))

    def fingerprint(self) -> dict:
        """The files this source reads, as {"root", "files", "bytes", "sha256"}: a hash of
        every file's relative path, size and bytes, read from disk now (not from the
        per-process cache). A run records it; resuming against changed text is refused."""
        root, files = self._root_and_files()
        digest, total = hashlib.sha256(), 0
        for rel in files:
            data = (root / rel).read_bytes()
            digest.update(f"{rel}\0{len(data)}\0".encode())
            digest.update(data)
            total += len(data)
        return {"root": str(root), "files": len(files), "bytes": total, "sha256": digest.hexdigest()}

    def describe(self) -> dict:
        root, _ = self._root_and_files()
        train, val, facts = self.corpus()
        return {"name": self.name, **{k: getattr(self, k) for k in self.__dataclass_fields__},
                "root": str(root), "tokens": "bytes", "train_bytes": len(train),
                "validation_bytes": len(val), **facts}


@dataclass(frozen=True)
class StdlibText(_ByteCorpus):
    name: ClassVar[str] = "stdlib"
    val_fraction: float = 0.1    # share of files held out for evaluation
    split_seed: int = 0          # changes which files are held out
    include_tests: bool = False  # also use the stdlib's test directories
    repeat_fraction: float = 0.0  # share of training sequences made of a repeated text window
    repeat_min_len: int = 8      # shortest repeated window (bytes)
    repeat_max_len: int = 32     # longest repeated window (bytes)

    def __post_init__(self):
        self._check_common()
        if not isinstance(self.include_tests, bool):
            raise ValueError(f"stdlib data: include_tests must be True or False, got {self.include_tests!r}")

    def _root_and_files(self):
        return _stdlib_files(self.include_tests)

    def describe(self) -> dict:
        return {**super().describe(), "python": sys.version.split()[0]}


@dataclass(frozen=True)
class TextFiles(_ByteCorpus):
    name: ClassVar[str] = "text"
    path: str = ""               # a file, or a folder (every non-hidden text file inside, recursively)
    val_fraction: float = 0.1    # share of files (or of the bytes of a single file) held out
    split_seed: int = 0          # changes which files are held out
    repeat_fraction: float = 0.0  # share of training sequences made of a repeated text window
    repeat_min_len: int = 8      # shortest repeated window (bytes)
    repeat_max_len: int = 32     # longest repeated window (bytes)

    def __post_init__(self):
        self._check_common()
        if not self.path:
            raise ValueError("text data needs a path: --set data.path=FILE_OR_FOLDER")
        if not Path(self.path).exists():
            raise ValueError(f"text data: path {self.path!r} does not exist")

    def _root_and_files(self):
        return _text_files(str(Path(self.path).resolve()))


# Listing files walks a directory tree: done once per process (every batch needs the corpus).
@functools.lru_cache(maxsize=4)
def _stdlib_files(include_tests: bool) -> tuple[Path, list[str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                   if "site-packages" not in p.parts and "dist-packages" not in p.parts
                   and (include_tests or not TEST_DIRS & set(p.relative_to(root).parts)))
    return root, files


@functools.lru_cache(maxsize=4)
def _text_files(path: str) -> tuple[Path, list[str]]:
    p = Path(path)
    if p.is_file():
        return p.parent, [p.name]
    files = sorted(str(f.relative_to(p)) for f in p.rglob("*")
                   if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
                   and _looks_like_text(f))
    return p, files
