"""Training data: a few sources with one small interface, found by name.

Every source is a frozen dataclass whose fields are its options (so a run manifest
can record it and `--set data.FIELD=VALUE` can change it), with:

    source.d_vocab                                 # tokens are ints in [0, d_vocab)
    source.sample(rng, batch, seq_len)             # int64 [B, T] training batch
    source.eval_set(n, seq_len, seed)              # int64 [N, T] fixed evaluation set,
                                                   # from held-out data where there is any
    source.describe()                              # dict: name + fields + facts (JSON-able)

All randomness comes from the numpy Generator / seed passed in.

| name       | module      | what                                                          |
|------------|-------------|---------------------------------------------------------------|
| `repeated` | repeated.py | random tokens with segments repeated (dense or sparse copies) |
| `markov`   | markov.py   | in-context Markov chains, a fresh transition matrix per sequence |
| `stdlib`   | text.py     | the running Python's standard library source, as bytes        |
| `text`     | text.py     | any file or folder of text, as bytes                          |
| `bpe`      | bpe_text.py | the stdlib (code, prose, tests) or your files, as BPE tokens  |
| `generality` | generality_tasks.py | literal / translation / fuzzy-matching blocks (Argument 4) |

Shape legend: B = batch, T = positions, N = evaluation sequences
"""
from __future__ import annotations

import dataclasses

from .repeated import RepeatedTokens
from .markov import MarkovChains, bayes_bigram_losses
from .text import StdlibText, TextFiles
from .bpe_text import BPEText
from .generality_tasks import GeneralityTasks

SOURCES = {cls.name: cls for cls in (RepeatedTokens, MarkovChains, StdlibText, TextFiles, BPEText,
                                     GeneralityTasks)}


def source_fields(name: str) -> dict:
    """The option fields (name -> dataclasses.Field) of the source called `name`."""
    return {f.name: f for f in dataclasses.fields(get_source_class(name))}


def get_source_class(name: str):
    if name not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; sources are {sorted(SOURCES)}")
    return SOURCES[name]


def make_source(name: str, **options):
    """The source called `name` with some options changed, e.g. make_source("repeated", d_vocab=32)."""
    cls = get_source_class(name)
    unknown = set(options) - set(source_fields(name))
    if unknown:
        raise ValueError(f"data source {name!r} has no option(s) {sorted(unknown)}; "
                         f"options are {sorted(source_fields(name))}")
    return cls(**options)


def source_to_dict(source) -> dict:
    """{"name": ..., **fields}: enough to rebuild the source with source_from_dict."""
    return {"name": source.name, **dataclasses.asdict(source)}


def source_from_dict(d: dict):
    d = dict(d)
    return make_source(d.pop("name"), **d)
