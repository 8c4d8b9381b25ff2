"""Near-duplicate tweets: copies that differ by a link, a mention, case, punctuation or a few letters.

    groups, copies = find(train_texts, test_texts)  # groups within train; {train row: test row it copies}

Texts are normalised first (links, mentions, case, punctuation, letters repeated for emphasis); MinHash
signatures (datasketch) over character shingles are cut into bands as datasketch's LSH cuts them (BANDS
of ROWS_PER_BAND values), and rows with the same band are candidate pairs; rapidfuzz confirms each
(similarity ≥ SIMILARITY), and the confirmed pairs' connected components are the groups.

Bounded whatever the rows: in a bucket of rows sharing a band (in the order of their texts, so that alike
ones sit together) a train row is proposed with the next NEIGHBOURS train rows and the first NEIGHBOURS
test rows only, so the pairs grow with the rows, never with their square (every bucket of the real
tweets is small enough, or alike enough, to give the groups and copies an LSH index gives). Pairs decided
already (two rows of one group by now; a train row whose test copy is found) are not checked again.
Memory: band keys per row; texts are compared on their first MAX_CHARS characters. Seconds for the
27k-tweet train split, and for 30,000 near-identical rows, on 2 cores (RESULTS.md, Data).
"""
from __future__ import annotations

import re
import zlib
from collections import Counter

import numpy as np
from datasketch import MinHash
from rapidfuzz import fuzz, process
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

SIMILARITY = 90       # rapidfuzz ratio (0-100) of the normalised texts for a confirmed near-copy
NUM_PERM = 64
BANDS, ROWS_PER_BAND = 14, 4  # what datasketch's MinHashLSH picks for a Jaccard threshold of 0.5 with 64 permutations
SHINGLE = 4           # characters per shingle
MIN_CHARS = 8         # shorter normalised texts ("lol", a bare link) are left to the exact dedupe
MAX_CHARS = 1_000     # longer texts are compared on their start (a tweet has 280 at most)
NEIGHBOURS = 16       # pairs proposed per row and band in a big bucket

_LINK = re.compile(r"(https?://|www\.)\S+")
_MENTION = re.compile(r"@\w+")
_APOSTROPHE = re.compile(r"['`\u2019]")  # "mother`s" and "mothers" are the same word
_NOT_WORD = re.compile(r"[^\w\s]+")
_REPEATS = re.compile(r"(\w)\1{2,}")  # "sooooo" → "soo"


def normalise(text: str) -> str:
    """The form in which two tweets count as near-copies: no links or mentions, lower case, no
    apostrophes or other punctuation, letters repeated three or more times cut to two, whitespace folded."""
    text = _APOSTROPHE.sub("", _MENTION.sub(" ", _LINK.sub(" ", text[:4 * MAX_CHARS].lower())))
    text = _REPEATS.sub(r"\1\1", _NOT_WORD.sub(" ", text))
    return " ".join(text.split())[:MAX_CHARS]


def _band_keys(texts: list[str]) -> np.ndarray:
    """(rows, BANDS, 2) uint64: each band's ROWS_PER_BAND MinHash values (each under 2**32) packed in two
    numbers, from one set of permutations over character shingles (crc32: fast and stable)."""
    shingles = ([text[i:i + SHINGLE].encode() for i in range(max(1, len(text) - SHINGLE + 1))] for text in texts)
    keys = np.empty((len(texts), BANDS, 2), dtype=np.uint64)
    for row, m in enumerate(MinHash.generator(shingles, num_perm=NUM_PERM, seed=1, hashfunc=zlib.crc32)):
        bands = m.hashvalues[:BANDS * ROWS_PER_BAND].reshape(BANDS, 2, 2)
        keys[row] = (bands[:, :, 0] << np.uint64(32)) | bands[:, :, 1]
    return keys


def _band_pairs(key: np.ndarray, rows: np.ndarray, rank: np.ndarray, n: int) -> np.ndarray:
    """Candidate pairs (as codes a * 2**31 + b, a < b) of one band: rows whose keys are equal. Within each
    bucket (train rows, then test rows (>= n), each in the order of their texts, `rank`, so that alike
    texts sit together), a train row is paired with the next NEIGHBOURS train rows and the first NEIGHBOURS
    test rows."""
    order = np.lexsort((rank, rows >= n, key[:, 1], key[:, 0]))
    k, r = key[order], rows[order]
    start = np.r_[True, (k[1:] != k[:-1]).any(axis=1)]
    bucket, starts = np.cumsum(start) - 1, np.flatnonzero(start)
    ends = np.r_[starts[1:], len(r)][bucket]
    first_test = (starts + np.add.reduceat((r < n).astype(np.int64), starts))[bucket]
    a, b = [], []
    for step in range(1, NEIGHBOURS + 1):
        same = (bucket[:-step] == bucket[step:]) & (r[step:] < n)
        at = first_test + step - 1  # the bucket's step-th test row
        test = (r < n) & (at < ends)
        a += [r[:-step][same], r[test]]
        b += [r[step:][same], r[at[test]]]
    a, b = np.concatenate(a), np.concatenate(b)
    return _distinct(np.minimum(a, b) * np.int64(2**31) + np.maximum(a, b))


def _distinct(codes: np.ndarray) -> np.ndarray:
    """The codes sorted, each once (np.unique, by sorting: its hash table is many times slower here)."""
    codes = np.sort(codes)
    return codes[np.r_[True, codes[1:] != codes[:-1]]] if len(codes) else codes


def _near_pairs(norm: list[str], n: int) -> np.ndarray:
    """(pairs, 2) rows (a < b, a < n) that nearly copy each other, band by band: a band's candidates are
    checked (rapidfuzz, in one call) unless decided already: seen in an earlier band, two train rows of one
    group by now, or a train row whose copy of a test row is found. Rows too short to compare are skipped."""
    rows = np.array([i for i, text in enumerate(norm) if len(text) >= MIN_CHARS], dtype=np.int64)
    found = [np.empty((0, 2), dtype=np.int64)]
    if len(rows) < 2:
        return found[0]
    texts = [norm[i] for i in rows]
    keys, rank = _band_keys(texts), np.empty(len(rows), dtype=np.int64)
    rank[sorted(range(len(rows)), key=texts.__getitem__)] = np.arange(len(rows))
    seen, component, copied = np.empty(0, dtype=np.int64), np.arange(n), np.zeros(n, dtype=bool)
    for band in range(BANDS):
        codes = _band_pairs(keys[:, band], rows, rank, n)
        a, b = codes // 2**31, codes % 2**31
        train = b < n
        todo = ~np.isin(codes, seen, assume_unique=True) & np.where(
            train, component[a] != component[np.where(train, b, 0)], ~copied[a])
        seen = _distinct(np.concatenate([seen, codes[todo]]))
        found.append(_confirmed(norm, np.stack([a[todo], b[todo]], axis=1)))
        pairs = np.concatenate(found)
        component = _components(n, pairs[pairs[:, 1] < n])
        copied[pairs[pairs[:, 1] >= n, 0]] = True
    return np.concatenate(found)


def _confirmed(norm: list[str], pairs: np.ndarray) -> np.ndarray:
    """The candidate pairs whose normalised texts are the same or nearly."""
    if not len(pairs):
        return pairs
    scores = process.cpdist([norm[a] for a in pairs[:, 0]], [norm[b] for b in pairs[:, 1]], scorer=fuzz.ratio,
                            dtype=np.float32)
    return pairs[scores >= SIMILARITY]


def find(texts: list[str], others: list[str] = ()) -> tuple[list[list[int]], dict[int, int]]:
    """In one pass (each text normalised and hashed once): the groups of two or more rows of `texts` that
    nearly copy each other (sorted row indices, groups in order of their first row), and the rows of
    `texts` that nearly copy a row of `others` (e.g. train rows that copy a test tweet): {row: the first
    row of others it was found to copy}, the last row of `texts` first."""
    norm = [normalise(t) for t in [*texts, *others]]
    n = len(texts)
    pairs = _near_pairs(norm, n)
    copied = pairs[pairs[:, 1] >= n]
    copied = copied[np.lexsort((-copied[:, 1], -copied[:, 0]))]  # last row first; of its copies, the first last
    copies = {int(a): int(b) - n for a, b in copied}
    return _groups(n, pairs[pairs[:, 1] < n]), copies


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Each row's connected component in the graph of near-copy pairs."""
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _groups(n: int, pairs: np.ndarray) -> list[list[int]]:
    """The connected components of more than one row."""
    if not len(pairs):
        return []
    groups: dict[int, list[int]] = {}
    for row, c in enumerate(_components(n, pairs).tolist()):
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
