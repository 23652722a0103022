"""Query algebra: weighted text and image terms added and subtracted, as rclip has them.

    "beach" - "people"             a text minus another
    2:"sunset" + "boat"            a term weighted twice
    img:query.jpg + "at night"     an image with a text modifier (img:"a path with spaces.jpg" too)
    a red star - a blue circle     unquoted words are one term up to the next standalone + or -

The query's vector is the weighted sum of its terms' L2-normalised embeddings (a term after `-` has its weight
negated), renormalised to unit length. A query of one plain text is that text's embedding, as before the
algebra. Weights are positive numbers written `W:` before a term; a sign goes between terms, or first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipworks.errors import InputFileError

_WEIGHT = re.compile(r"(\d+(?:\.\d+)?|\.\d+):(?=[\"A-Za-z])")  # "2:30 pm" is text, "2:cat" is a weight


class QueryError(InputFileError):
    """A query that does not parse; the message names the bad term and what was expected."""


@dataclass(frozen=True)
class QueryTerm:
    """One term of a query: `weight` (negative: subtracted) times a text's or an image file's embedding."""

    weight: float
    kind: str  # "text" or "image"
    value: str  # the text, or the image's path

    def __str__(self) -> str:
        body = f'"{self.value}"' if self.kind == "text" else f'img:"{self.value}"'
        return f"{self.weight:+g}:{body}"


def _error(query: str, number: int, start: int, what: str) -> QueryError:
    near = query[start:start + 40]
    return QueryError(f"query {query!r}: term {number} ({near!r}): {what}")


def _is_operator(query: str, i: int) -> bool:
    """A standalone + or - (followed by a space, a quote, a weight, `img:` or the end): not part of a word."""
    if query[i] not in "+-":
        return False
    rest = query[i + 1:]
    return not rest or rest[0].isspace() or rest[0] == '"' or rest.startswith("img:") or bool(_WEIGHT.match(rest))


def _starts_term(query: str, i: int) -> bool:
    """Where a bare text must stop: another term starts here without an operator before it."""
    return query[i] == '"' or query.startswith("img:", i) or bool(_WEIGHT.match(query, i))


def parse_query(query: str) -> list[QueryTerm]:
    """The terms of `query`, in order; a QueryError naming the term that does not parse."""
    terms: list[QueryTerm] = []
    i, n, sign = 0, len(query), 1.0
    expect_term, signed = True, False
    while True:
        while i < n and query[i].isspace():
            i += 1
        if i >= n:
            break
        number = len(terms) + 1
        if not expect_term:
            if not _is_operator(query, i):
                raise _error(query, number, i, 'expected "+" or "-" before this term')
            sign = 1.0 if query[i] == "+" else -1.0
            i += 1
            expect_term = True
            continue
        if _is_operator(query, i):
            if terms or signed:
                raise _error(query, number, i, 'two operators in a row: expected a term after "+" or "-"')
            sign = 1.0 if query[i] == "+" else -1.0  # a leading sign: "- people", "+ at night"
            signed = True
            i += 1
            continue
        start = i
        weight = 1.0
        match = _WEIGHT.match(query, i)
        if match:
            weight = float(match.group(1))
            if weight == 0:
                raise _error(query, number, start, 'weight 0 adds nothing; use "-" to subtract a term')
            i = match.end()
        kind = "text"
        if query.startswith("img:", i):
            kind = "image"
            i += 4
        if i < n and query[i] == '"':
            end = query.find('"', i + 1)
            if end < 0:
                raise _error(query, number, start, 'unclosed quote: expected a closing "')
            value, i = query[i + 1:end], end + 1
        elif kind == "image":
            end = i
            while end < n and not query[end].isspace():
                end += 1
            value, i = query[i:end], end
        else:
            end = i
            while end < n:  # words up to a standalone operator or the start of another term
                if query[end].isspace():
                    end += 1
                    continue
                if end > i and (_is_operator(query, end) or _starts_term(query, end)):
                    break
                while end < n and not query[end].isspace():
                    end += 1
            value, i = query[i:end], end
        value = value.strip()
        if not value:
            raise _error(query, number, start, "empty term: expected a text or img:PATH" if kind == "text"
                         else "img: needs a path, e.g. img:photo.jpg")
        terms.append(QueryTerm(sign * weight, kind, value))
        expect_term = False
    if expect_term:
        if terms or signed:
            raise _error(query, len(terms) + 1, n, 'the query ends with "+" or "-": expected a term after it')
        raise QueryError("empty query: give a text, img:PATH, or terms joined by + and -")
    return terms


def combine(weights: Sequence[float], embeddings: np.ndarray, query: str = "") -> np.ndarray:
    """Σ weight·(embedding / |embedding|), renormalised to unit length: the vector of a parsed query."""
    vectors = np.asarray(embeddings, dtype=np.float32)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    total = np.asarray(weights, dtype=np.float32) @ vectors
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError(f"query {query!r}: its terms cancel out (the weighted sum is zero)")
    return total / norm
