"""Near-duplicate tweets: copies that differ by a link, a mention, case, punctuation or a few letters.

    groups, copies = find(train_texts, test_texts)  # groups within train; {train row: test row it copies}

Texts are normalised first (links, mentions, case, punctuation, letters repeated for emphasis); MinHash
LSH (datasketch) over character shingles then proposes candidate pairs, and rapidfuzz confirms each
(similarity ≥ SIMILARITY). Seconds for the 27k-tweet train split on 2 cores (RESULTS.md, Data).
"""
from __future__ import annotations

import re
import zlib
from collections import Counter

import numpy as np
from datasketch import MinHash, MinHashLSH
from rapidfuzz import fuzz
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

SIMILARITY = 90       # rapidfuzz ratio (0-100) of the normalised texts for a confirmed near-copy
LSH_THRESHOLD = 0.5   # estimated Jaccard of the shingle sets for a candidate pair
NUM_PERM = 64
SHINGLE = 4           # characters per shingle
MIN_CHARS = 8         # shorter normalised texts ("lol", a bare link) are left to the exact dedupe

_LINK = re.compile(r"(https?://|www\.)\S+")
_MENTION = re.compile(r"@\w+")
_APOSTROPHE = re.compile(r"['`\u2019]")  # "mother`s" and "mothers" are the same word
_NOT_WORD = re.compile(r"[^\w\s]+")
_REPEATS = re.compile(r"(\w)\1{2,}")  # "sooooo" → "soo"


def normalise(text: str) -> str:
    """The form in which two tweets count as near-copies: no links or mentions, lower case, no
    apostrophes or other punctuation, letters repeated three or more times cut to two, whitespace folded."""
    text = _APOSTROPHE.sub("", _MENTION.sub(" ", _LINK.sub(" ", text.lower())))
    text = _REPEATS.sub(r"\1\1", _NOT_WORD.sub(" ", text))
    return " ".join(text.split())


def _signatures(texts: list[str]) -> list[MinHash]:
    """One MinHash per text over its character shingles (one set of permutations for all; crc32 is a
    fast, stable hash for shingles, where sha1's strength buys nothing)."""
    shingles = [[text[i:i + SHINGLE].encode() for i in range(max(1, len(text) - SHINGLE + 1))] for text in texts]
    return MinHash.bulk(shingles, num_perm=NUM_PERM, seed=1, hashfunc=zlib.crc32)


def _candidates(norm: list[str], keys: list[int], queries: list[int]) -> list[tuple[int, int]]:
    """Pairs (query, key) whose shingle sets LSH finds alike; rows too short to compare are skipped."""
    lsh = MinHashLSH(threshold=LSH_THRESHOLD, num_perm=NUM_PERM)
    rows = sorted(i for i in set(keys) | set(queries) if len(norm[i]) >= MIN_CHARS)
    signatures = dict(zip(rows, _signatures([norm[i] for i in rows])))
    for i in keys:
        if i in signatures:
            lsh.insert(i, signatures[i])
    return [(q, k) for q in queries if q in signatures for k in lsh.query(signatures[q]) if k != q]


def _confirmed(norm: list[str], pairs) -> list[tuple[int, int]]:
    return [(a, b) for a, b in pairs if norm[a] == norm[b] or fuzz.ratio(norm[a], norm[b]) >= SIMILARITY]


def find(texts: list[str], others: list[str] = ()) -> tuple[list[list[int]], dict[int, int]]:
    """In one pass (each text normalised and hashed once): the groups of two or more rows of `texts` that
    nearly copy each other (sorted row indices, groups in order of their first row), and the rows of
    `texts` that nearly copy a row of `others` (e.g. train rows that copy a test tweet): {row: row of others}."""
    norm = [normalise(t) for t in [*texts, *others]]
    n = len(texts)
    pairs = _confirmed(norm, _candidates(norm, keys=list(range(len(norm))), queries=list(range(n))))
    copies = {a: b - n for a, b in sorted(((a, b) for a, b in pairs if b >= n), reverse=True)}
    return _groups(n, [(a, b) for a, b in pairs if b < n]), copies


def _groups(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """The connected components of more than one row in the graph of near-copy pairs."""
    if not pairs:
        return []
    a, b = zip(*pairs)
    _, component = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    groups: dict[int, list[int]] = {}
    for row, c in enumerate(component):
        groups.setdefault(c, []).append(row)
    return [g for g in groups.values() if len(g) > 1]


def near_duplicate_groups(texts: list[str]) -> list[list[int]]:
    """The near-duplicate groups within `texts` (see `find`)."""
    return find(texts)[0]


def near_copies(texts: list[str], others: list[str]) -> dict[int, int]:
    """The rows of `texts` that nearly copy a row of `others` (see `find`)."""
    return find(texts, others)[1]


def resolve(groups: list[list[int]], labels: list[int]) -> tuple[set[int], int]:
    """Which rows to drop so that each near-duplicate group leaves one row: the first row whose label
    is the group's majority; a group with no majority label is dropped whole (people disagree on it).
    → (rows to drop, number of groups with conflicting labels)."""
    drop, conflicts = set(), 0
    for group in groups:
        votes = Counter(labels[i] for i in group).most_common()
        if len(votes) > 1:
            conflicts += 1
        if len(votes) > 1 and votes[0][1] == votes[1][1]:
            drop.update(group)
            continue
        keep = next(i for i in group if labels[i] == votes[0][0])
        drop.update(i for i in group if i != keep)
    return drop, conflicts
