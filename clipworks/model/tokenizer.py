"""CLIP's byte-level BPE tokenizer: text -> [N, context_length] token ids, as the CLIP text towers were trained on.

Text is repaired (ftfy), HTML-unescaped, whitespace-collapsed and lower-cased, split into words, numbers and
punctuation runs, and each piece is spelled in 256 byte symbols and merged greedily by the ranks of OpenAI's
merge list (`vocab/bpe_simple_vocab_16e6.txt.gz`). Each row is [start_of_text, ids..., end_of_text, 0, ...].
"""

from __future__ import annotations

import functools
import gzip
import html
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import ftfy
import regex
import torch

from clipworks.errors import ContextLengthError, InputFileError

BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
DEFAULT_CONTEXT_LENGTH = 77
NUM_MERGES = 49152 - 256 - 2  # the merge list holds more; CLIP's 49,408-token vocabulary uses the first 48,894
END_OF_WORD = "</w>"
# OpenAI's spelling (open_clip renamed them "<start_of_text>"/"<end_of_text>", with the same ids).
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
PIECE_PATTERN = (
    regex.escape(START_OF_TEXT) + "|" + regex.escape(END_OF_TEXT)
    + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)
PIECE_CACHE_SIZE = 1 << 16


def default_bpe_path() -> Path:
    """The merge list shipped with clipworks."""
    return Path(str(resources.files("clipworks.model") / "vocab" / BPE_FILENAME))


@functools.cache
def byte_symbols() -> dict[int, str]:
    """Each byte as one printable character (GPT-2's table): printable Latin-1 bytes stand for themselves, the
    other 68 are shifted to U+0100.. in byte order. Insertion order is the vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


@functools.cache
def symbol_bytes() -> dict[str, int]:
    """The inverse of `byte_symbols`."""
    return {symbol: b for b, symbol in byte_symbols().items()}


def clean_text(text: str) -> str:
    """ftfy repair, HTML-unescape twice (captions are often double-escaped), collapse whitespace, lower-case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


class _MergeTable:
    """Token ids and merge ranks read from one merge list, shared by every Tokenizer built on that file."""

    def __init__(self, path: Path) -> None:
        try:
            with gzip.open(path) as f:
                lines = f.read().decode("utf-8").split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as err:
            raise InputFileError(f"cannot read the BPE merge list {path}: {err}") from err
        merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
        if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
            raise InputFileError(
                f"{path} is not a CLIP merge list: expected a header line then {NUM_MERGES} lines of two symbols"
            )
        symbols = list(byte_symbols().values())
        vocab = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges]
        vocab += [START_OF_TEXT, END_OF_TEXT]
        self.token_to_id = {token: i for i, token in enumerate(vocab)}
        self.id_to_token = {i: token for token, i in self.token_to_id.items()}
        self.merges = merges
        self.merge_rank = {pair: rank for rank, pair in enumerate(merges)}
        self.special_ids = {START_OF_TEXT: self.token_to_id[START_OF_TEXT], END_OF_TEXT: self.token_to_id[END_OF_TEXT]}
        self.piece_ids = functools.lru_cache(maxsize=PIECE_CACHE_SIZE)(self._piece_ids)

    def merge(self, piece: str) -> list[str]:
        """Byte-symbol string -> BPE tokens: repeatedly merge every occurrence of the lowest-ranked adjacent pair."""
        word = list(piece[:-1]) + [piece[-1] + END_OF_WORD]
        while len(word) > 1:
            left, right = min(zip(word, word[1:]), key=lambda pair: self.merge_rank.get(pair, NUM_MERGES))
            if (left, right) not in self.merge_rank:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == left and word[i + 1] == right:
                    merged.append(left + right)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def _piece_ids(self, piece: str) -> tuple[int, ...]:
        special = self.special_ids.get(piece)
        if special is not None:
            return (special,)
        symbols = byte_symbols()
        spelled = "".join(symbols[b] for b in piece.encode("utf-8"))
        return tuple(self.token_to_id[token] for token in self.merge(spelled))


@functools.lru_cache(maxsize=4)
def _merge_table(path: str) -> _MergeTable:
    return _MergeTable(Path(path))


@functools.cache
def _piece_regex() -> regex.Pattern:
    return regex.compile(PIECE_PATTERN, regex.IGNORECASE)


class Tokenizer:
    """CLIP's BPE tokenizer bound to a context length; ids agree with open_clip's `tokenize`."""

    pad_token_id = 0

    def __init__(self, bpe_path: str | os.PathLike | None = None, context_length: int = DEFAULT_CONTEXT_LENGTH) -> None:
        self.bpe_path = Path(bpe_path) if bpe_path is not None else default_bpe_path()
        self.context_length = context_length
        self._table = _merge_table(str(self.bpe_path.resolve()))
        self.sot_token_id = self._table.special_ids[START_OF_TEXT]
        self.eot_token_id = self._table.special_ids[END_OF_TEXT]
        self.vocab_size = len(self._table.token_to_id)

    @property
    def vocabulary(self) -> dict[str, int]:
        """Token (in byte symbols, `</w>` ending a word) -> id, for writing the tokenizer in other libraries' files."""
        return dict(self._table.token_to_id)

    @property
    def merges(self) -> list[tuple[str, str]]:
        """The BPE merges in rank order."""
        return list(self._table.merges)

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without start/end tokens."""
        ids: list[int] = []
        for piece in _piece_regex().findall(clean_text(text)):
            ids.extend(self._table.piece_ids(piece))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids: start/end tokens and the padding after the last end token are dropped."""
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        if self.eot_token_id in ids:
            ids = ids[: len(ids) - ids[::-1].index(self.eot_token_id)]
        byte_of = symbol_bytes()
        raw = bytearray()
        for i in ids:
            if i in (self.sot_token_id, self.eot_token_id):
                continue
            token = self._table.id_to_token.get(i)
            if token is None:
                raise ValueError(f"token id {i} is outside the vocabulary (0..{self.vocab_size - 1})")
            word_end = token.endswith(END_OF_WORD)
            raw.extend(byte_of[c] for c in (token[: -len(END_OF_WORD)] if word_end else token))
            if word_end:
                raw.extend(b" ")
        # Decode once: a character's bytes may be split across tokens.
        return raw.decode("utf-8", errors="replace").strip()

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None, truncate: bool = True
    ) -> torch.LongTensor:
        """Token ids [N, context_length]: start, text, end, zero padding; over-long texts keep their end token."""
        context_length = self.context_length if context_length is None else context_length
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2 (start and end tokens), got {context_length}")
        if isinstance(texts, str):
            texts = [texts]
        result = torch.zeros(len(texts), context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
            ids = [self.sot_token_id, *self.encode(text)]
            if len(ids) + 1 > context_length:
                if not truncate:
                    preview = repr(text[:40] + ("..." if len(text) > 40 else ""))
                    raise ContextLengthError(
                        f"text {i} of the batch ({preview}) needs {len(ids) + 1} tokens with start and end tokens, "
                        f"more than the context length {context_length}; pass truncate=True to cut it"
                    )
                ids = ids[: context_length - 1]
            ids.append(self.eot_token_id)
            result[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return result


@functools.cache
def _default_tokenizer() -> Tokenizer:
    return Tokenizer()


def tokenize(
    texts: str | Sequence[str], context_length: int = DEFAULT_CONTEXT_LENGTH, truncate: bool = True
) -> torch.LongTensor:
    """Token ids [N, context_length] from the shipped merge list (read on first use)."""
    return _default_tokenizer()(texts, context_length=context_length, truncate=truncate)
