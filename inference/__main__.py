"""python -m inference [--model PATH_OR_REPO] "tweet" ... [--file F] [--json]

Classifies tweets with a run folder, a Hub repo, or (default) the latest complete run in --runs-dir.
"""
from __future__ import annotations

import argparse
import json
import sys

from core.model import grant_cores
from core.settings import Settings, quiet_libraries

from .policy import PRECISIONS


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m inference", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texts", nargs="*", help="tweets to classify")
    p.add_argument("--model", help="run folder or Hub repo id (default: the latest complete run in --runs-dir)")
    p.add_argument("--runs-dir", default=Settings.from_env().runs_dir or "runs", help="where runs are (default: %(default)s)")
    p.add_argument("--file", help="a text file with one tweet per line ('-' = standard input)")
    p.add_argument("--json", action="store_true", help="print one JSON object per tweet")
    p.add_argument("--explain", action="store_true",
                   help="also show the words that drove each label (word occlusion) and the span that carries it")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="number format and runtime; auto: eager fp32 for this one call (the app's auto times the "
                        "faster formats in the background, which pays over many calls); int8, onnx-int8, "
                        "onnx-int8-block and bf16 change some labels (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    grant_cores(Settings.from_env().cpu_cores)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()

    from core.errors import UserError
    from core.runs import latest
    from .classifier import Classifier

    texts = [t for t in args.texts if t.strip()]
    if len(texts) < len(args.texts):  # e.g. an unset shell variable: classify the rest, say what was left
        print(f"warning: skipped {len(args.texts) - len(texts)} empty text(s)", file=sys.stderr)
    if args.file:
        try:
            lines = (sys.stdin if args.file == "-" else open(args.file, encoding="utf-8", errors="replace")).read()
        except OSError as exc:
            print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
        texts += [line for line in lines.splitlines() if line.strip()]
    if not texts:
        print("error: give tweets as arguments or with --file", file=sys.stderr)
        return 2
    try:
        source = args.model
        if not source:
            run = latest(args.runs_dir)
            if run is None:
                raise UserError(f"no complete run in {args.runs_dir}: train one (python -m finetune) or pass --model")
            source = str(run.path)
        # one call: timing the faster formats (and exporting them) would not pay for itself
        clf = Classifier.load(source, precision="fp32" if args.precision == "auto" else args.precision)
        if args.explain:
            from .classifier import Prediction
            from .explain import explain_many
            explanations = explain_many(clf, texts)
            predictions = [Prediction(e.label, e.scores) for e in explanations]
        else:
            explanations, predictions = [None] * len(texts), clf.classify(texts)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for text, pred, ex in zip(texts, predictions, explanations):
        if args.json:
            why = {"span": ex.span, "words": ex.to_dict()["words"]} if ex else {}
            print(json.dumps({"text": text, "model": clf.name, **pred.to_dict(), **why}))
        else:
            scores = "  ".join(f"{k} {v:.3f}" for k, v in pred.scores.items())
            print(f"{pred.label:<8}  {scores}  | {text}")
            if ex:
                top = sorted(ex.words, key=lambda w: -abs(w[1]))[:5]
                print(f"{'':<8}  span: {ex.span!r}  words: " + ", ".join(f"{w} {s:+.2f}" for w, s in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
