"""COCO-style caption metrics: BLEU-1..4, ROUGE-L, CIDEr-D (pure Python) and METEOR 1.5 (through Java).

The pure metrics take ``refs: {key: [reference, ...]}`` and ``hyps: {key: hypothesis}`` whose strings are
already tokenized and joined by spaces; they reproduce the COCO caption evaluation server's numbers:

* BLEU: corpus level; clipped n-gram matches and candidate n-gram counts are summed over all images, the
  brevity penalty uses the summed "closest" reference lengths (ties go to the shorter reference), and, as
  COCO does, each precision is smoothed as (matches + 1e-15) / (count + 1e-9), so a corpus without a single
  4-gram match gets a tiny positive BLEU-4 rather than 0.
* ROUGE-L: per image, the best LCS precision and the best LCS recall over the references (possibly from
  different references) give F = (1 + b^2) P R / (R + b^2 P), b = 1.2; the corpus score is the mean.
* CIDEr-D: document frequencies come from the references of the evaluated images only (an n-gram's df is
  the number of images whose references contain it), idf = log(#images) - log(max(1, df)), so a one-image
  corpus always scores 0; hypothesis tf-idf weights are clipped by the reference's, a Gaussian penalty on
  the length difference (sigma 6) multiplies each cosine, and the mean over n = 1..4 and the references is
  scaled by 10.

``evaluate_captions`` tokenizes raw captions with ``tokenize`` first and adds METEOR when Java is present.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

from clipworks.errors import ClipworksError, InputFileError, missing_extra

Refs = Mapping[Hashable, Sequence[str]]
Hyps = Mapping[Hashable, str]

_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
_CLITIC_RE = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
_PUNCT_RE = re.compile(r"""[,!?;:"`()\[\]{}]|(?<!\d)\.|\.(?!\d)""")


def tokenize(text: str) -> list[str]:
    """Lowercase and split a raw caption roughly as COCO's PTB tokenizer + punctuation filter does.

    Clitics are split off as PTB does ("man's" -> "man 's", "isn't" -> "is n't"); the characters
    . , ! ? ; : " ` ( ) [ ] { } become spaces (a '.' between digits is kept: "3.5"); tokens made only of
    apostrophes or hyphens are dropped and quote apostrophes at a word's edges are stripped. Hyphenated
    words stay whole ("black-and-white"). Unlike PTB, brackets vanish instead of becoming "-lrb-" tokens.
    """
    text = _PUNCT_RE.sub(" ", _CLITIC_RE.sub(r" \1", text.lower()))
    tokens = []
    for tok in text.split():
        if tok not in _CLITICS:
            tok = tok.strip("'")
        if tok.strip("'-"):
            tokens.append(tok)
    return tokens


def _pairs(refs: Refs, hyps: Hyps) -> list[tuple[list[str], list[list[str]]]]:
    """Check the inputs and return (hypothesis tokens, [reference tokens]) per hypothesis key."""
    if not hyps:
        raise InputFileError("captions: no hypotheses to evaluate")
    out = []
    for key, hyp in hyps.items():
        rs = refs.get(key)
        if not isinstance(hyp, str):
            raise InputFileError(f"captions: hypothesis for key {key!r} is not a string")
        if rs is None or isinstance(rs, str) or not all(isinstance(r, str) for r in rs):
            raise InputFileError(f"captions: key {key!r} needs a list of reference strings")
        if not any(r.split() for r in rs):
            raise InputFileError(f"captions: key {key!r} has no non-empty reference caption")
        out.append((hyp.split(), [r.split() for r in rs]))
    return out


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def bleu(refs: Refs, hyps: Hyps, n: int = 4) -> list[float]:
    """Corpus BLEU-1..n as the COCO caption scorer computes it (see the module docstring)."""
    matches, counts, hyp_len, ref_len = [0] * n, [0] * n, 0, 0
    for hyp, rs in _pairs(refs, hyps):
        best: dict[tuple, int] = {}
        for r in rs:
            for gram, c in _ngrams(r, n).items():
                best[gram] = max(best.get(gram, 0), c)
        for gram, c in _ngrams(hyp, n).items():
            matches[len(gram) - 1] += min(c, best.get(gram, 0))
        for k in range(n):
            counts[k] += max(0, len(hyp) - k)
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in rs)[1]
    ratio = (hyp_len + 1e-15) / (ref_len + 1e-9)
    penalty = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    scores, product = [], 1.0
    for k in range(n):
        product *= (matches[k] + 1e-15) / (counts[k] + 1e-9)
        scores.append(product ** (1 / (k + 1)) * penalty)
    return scores


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag = 0
        for j, y in enumerate(b, 1):
            prev_diag, row[j] = row[j], prev_diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(refs: Refs, hyps: Hyps, beta: float = 1.2) -> float:
    """Mean over images of the LCS F-measure built from the best precision and best recall over references."""
    _pairs(refs, hyps)
    scores = []
    for key, hyp in hyps.items():
        cand = hyp.split(" ")  # COCO splits on single spaces; "" is then one empty token
        lcs = [(_lcs(r.split(" "), cand), len(r.split(" "))) for r in refs[key]]
        p, r = max(m / len(cand) for m, _ in lcs), max(m / n for m, n in lcs)
        scores.append((1 + beta**2) * p * r / (r + beta**2 * p) if p and r else 0.0)
    return math.fsum(scores) / len(scores)


def cider_d(refs: Refs, hyps: Hyps, n: int = 4, sigma: float = 6.0) -> float:
    """CIDEr-D as the COCO server computes it, with df taken from the evaluated images' references."""
    data = [(_ngrams(h, n), len(h), [(_ngrams(r, n), len(r)) for r in rs]) for h, rs in _pairs(refs, hyps)]
    df: Counter = Counter()
    for _, _, rs in data:
        df.update({gram for grams, _ in rs for gram in grams})
    log_n = math.log(len(data))

    def vectors(grams: Counter) -> tuple[list[dict], list[float]]:
        vec: list[dict] = [{} for _ in range(n)]
        for gram, tf in grams.items():
            vec[len(gram) - 1][gram] = tf * (log_n - math.log(max(1.0, df[gram])))
        return vec, [math.sqrt(sum(w * w for w in v.values())) for v in vec]

    scores = []
    for hyp_grams, hyp_len, rs in data:
        hv, hnorm = vectors(hyp_grams)
        total = [0.0] * n
        for ref_grams, length in rs:
            rv, rnorm = vectors(ref_grams)
            penalty = math.exp(-((hyp_len - length) ** 2) / (2 * sigma**2))
            for k in range(n):
                dot = sum(min(w, rv[k].get(g, 0.0)) * rv[k].get(g, 0.0) for g, w in hv[k].items())
                total[k] += (dot / (hnorm[k] * rnorm[k]) if hnorm[k] and rnorm[k] else dot) * penalty
        scores.append(10.0 * sum(total) / n / len(rs))
    return math.fsum(scores) / len(scores)


# ---------------------------------------------------------------- METEOR (Java)


class MeteorError(ClipworksError):
    """The METEOR jar was found but failed, hung or answered something unexpected."""


def _meteor_jar() -> Path | None:
    try:
        import pycocoevalcap
    except ImportError:
        return None
    for base in getattr(pycocoevalcap, "__path__", []):  # a namespace package: no __file__
        jar = Path(base) / "meteor" / "meteor-1.5.jar"
        if jar.is_file():
            return jar
    return None


def meteor_unavailable_reason() -> str | None:
    """Why ``meteor`` would return None (no ``java`` on PATH, or no pycocoevalcap meteor-1.5.jar); None if usable."""
    if shutil.which("java") is None:
        return "METEOR needs Java: no 'java' on PATH"
    missing = missing_extra("meteor", "METEOR")
    if missing is not None:
        return missing
    if _meteor_jar() is None:
        return "METEOR needs pycocoevalcap's meteor-1.5.jar: the installed pycocoevalcap lacks it"
    return None


def meteor(refs: Refs, hyps: Hyps, timeout: float = 600.0) -> float | None:
    """Corpus METEOR 1.5 (English, normalized) from the jar's stdio mode; None when unavailable.

    Call ``meteor_unavailable_reason()`` for the reason. Raises ``MeteorError`` if the JVM fails or
    ``timeout`` seconds pass (the JVM is then killed).
    """
    if meteor_unavailable_reason() is not None:
        return None
    pairs = _pairs(refs, hyps)
    jar = _meteor_jar()
    cmd = ["java", "-Xmx2G", "-Dfile.encoding=UTF-8", "-jar", str(jar), "-", "-", "-stdio", "-l", "en", "-norm"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()

        def fail(what: str) -> MeteorError:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace").strip()[-500:]
            state = "timed out" if not timer.is_alive() else what
            return MeteorError(f"METEOR ({jar}) {state}: {tail or 'no message from Java'}")

        def send(fields: list[str]) -> None:
            line = " ||| ".join(" ".join(f.replace("|||", " ").split()) for f in fields)  # one line per request
            try:
                proc.stdin.write((line + "\n").encode("utf-8"))
                proc.stdin.flush()
            except OSError:
                raise fail("stopped reading its input") from None

        def read() -> str:
            answer = proc.stdout.readline().decode("utf-8", "replace").strip()
            if not answer:
                raise fail("stopped answering")
            return answer

        try:
            stats = []
            for hyp, rs in pairs:  # one request, one answer: no pipe can fill up
                send(["SCORE", *(" ".join(r) for r in rs), " ".join(hyp)])
                stats.append(read())
            send(["EVAL", *stats])
            answers = [read() for _ in range(len(pairs) + 1)]  # per-image scores, then the corpus score
            try:
                return float(answers[-1])
            except ValueError:
                raise MeteorError(f"METEOR answered {answers[-1]!r} instead of a score") from None
        finally:
            timer.cancel()
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass


def evaluate_captions(refs: Mapping[Hashable, Sequence[str]], hyps: Mapping[Hashable, str],
                      with_meteor: bool = True) -> dict[str, float]:
    """Tokenize raw captions and score them: BLEU-1..4, ROUGE-L, CIDEr-D and, when Java is present, METEOR.

    Only the keys of ``hyps`` are evaluated (CIDEr-D's df comes from their references). References empty
    after tokenization are ignored; a key without a non-empty reference raises ``InputFileError``.
    """
    _pairs(refs, hyps)  # types, missing keys, empty input
    tok_hyps = {k: " ".join(tokenize(h)) for k, h in hyps.items()}
    tok_refs = {k: [t for t in (" ".join(tokenize(r)) for r in refs[k]) if t] for k in hyps}
    _pairs(tok_refs, tok_hyps)  # references that were only punctuation
    out = {f"BLEU-{k + 1}": s for k, s in enumerate(bleu(tok_refs, tok_hyps))}
    out["ROUGE-L"] = rouge_l(tok_refs, tok_hyps)
    out["CIDEr-D"] = cider_d(tok_refs, tok_hyps)
    if with_meteor and (m := meteor(tok_refs, tok_hyps)) is not None:
        out["METEOR"] = m
    return out
