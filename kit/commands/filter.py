"""`kit filter NAME --query PRED.npz --out OUT.npz`: rescore predictions so non-landmark images rank last.

NAME: delf | sift | distractor | centroids, or several joined by + (`delf+distractor`), see kit/filters/.
Parameters (inlier threshold, alpha/tau, eta) are fitted to maximise GAP with --fit-on VAL.npz [MORE.npz]
--solution SOL.csv (validation predictions plus predictions on non-landmark distractors; ids missing
from the solution count as non-landmarks) and saved as JSON (--save, default OUT.filter.json); --load
reuses a fitted filter; --param key=value sets one by hand. Failing rows are demoted below every
passing row, or emptied with --drop. Prints seconds per image.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from kit.commands import deprecated, renamed
from kit.device import DEVICES
from kit.ensemble.rules import load_any
from kit.errors import KitError
from kit.filters import FILTERS
from kit.filters.chain import build_filter, filter_names, load_filter, save_filter
from kit.localfeatures.matching import TRANSFORMS
from kit.predictions import concat, save_predictions
from kit.truth import gap_top1, load_truth, true_top1


def filter_spec(text: str) -> str:
    """argparse type: registry names (kit.filters.FILTERS) joined by +; an old name becomes the new one."""
    try:
        names = filter_names(text)
    except KitError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("filter: ")) from None
    for old in set(names) & set(FILTERS.aliases):
        deprecated(f"filter '{old}'", f"'{FILTERS.aliases[old]}'")
    return "+".join(FILTERS.aliases.get(n, n) for n in names)


class _OldPositional(argparse.Action):
    """`kit filter NAME PRED`: PRED, the old place of --query, kept for one release."""
    def __call__(self, parser, namespace, values, option_string=None):
        deprecated("the positional PRED", "--query PRED")
        namespace.query = values


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("filter", help=f"non-landmark filter: rescore predictions ({', '.join(FILTERS)})",
                              description=__doc__)
    p.add_argument("name", metavar="NAME", type=filter_spec,
                   help=f"{' | '.join(FILTERS)}, joined by + to chain (e.g. sift+distractor)")
    p.add_argument("old_query", nargs="?", action=_OldPositional, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--query", help="prediction .npz (or submission .csv) to rescore (required)")
    p.add_argument("--out", required=True, help="rescored prediction .npz to write")
    p.add_argument("--submission", help="also write this submission CSV (default: none)")
    p.add_argument("--fit-on", nargs="+", default=[], metavar="FILE", help="predictions to fit parameters on (default: none)")
    p.add_argument("--solution", help="truth of --fit-on (and of --query, to print GAP before/after; default: none)")
    p.add_argument("--load", metavar="JSON", help="a fitted filter saved by an earlier run (default: none)")
    p.add_argument("--save", metavar="JSON", help="where to save the fitted filter (default OUT.filter.json)")
    p.add_argument("--param", nargs="+", default=[], metavar="KEY=VALUE", help="set parameters by hand (default: none)")
    p.add_argument("--drop", action="store_true", help="empty failing rows instead of demoting them")
    # resource/extractor options default to None: the filter's own default applies, or with --load the
    # saved setting, so only what is given here overrides it
    g = p.add_argument_group("resources")
    g.add_argument("--data-dir", help="images: DATA/{test,train}/a/b/c/<id>.jpg or DATA/[images/]<id>.jpg (default .)")
    g.add_argument("--index", help="prediction .npz with embeddings of labelled images (default: none)")
    g.add_argument("--labels", help="CSV id,landmark_id of the --index images (default DATA/train.csv)")
    g.add_argument("--distractors", help="prediction .npz with embeddings of non-landmark images (default: none)")
    g.add_argument("--k", type=int, help="distractor: nearest distractors averaged (default 5)")
    g = p.add_argument_group("local features (delf, sift)")
    g.add_argument("--candidates", type=int, help="training images of the predicted class verified per query (default 3)")
    g.add_argument("--ratio", type=float, help="Lowe ratio test (default 0.9)")
    g.add_argument("--transform", choices=list(TRANSFORMS), help="RANSAC model (default homography)")
    g.add_argument("--ransac-threshold", type=float, help="pixels in the extractor's frame (default 8)")
    g.add_argument("--cache-dir", help="feature cache dir (default auto: $KIT_CACHE_DIR or ~/.cache/kit/localfeatures; none = no cache)")
    g.add_argument("--delf", help="trained delf.pt (default: packaged backbone, feature-norm scores)")
    g.add_argument("--scales", help="'cheap' (0.7071,1,1.4142; default), 'delf' (0.25..2) or a list")
    g.add_argument("--image-size", type=int, help="extractor working size (default 256)")
    g.add_argument("--max-keypoints", type=int, help="keypoints per image (default 1000)")
    g.add_argument("--device", choices=DEVICES, help="torch device for DELF (default auto)")
    g.add_argument("--threads", type=int, help="threads for matching (default 1)")
    g.add_argument("--strict", action="store_true", default=None,
                   help="an undecodable/oversized image is an error (default: no landmark, counted)")
    renamed(p, train_pred="--index", train_labels="--labels", neighbours="--candidates", jobs="--threads")
    p.set_defaults(func=run)


def parse_scales(text: str) -> list[float]:
    from kit.localfeatures.delf.extractor import CHEAP_SCALES, DELF_SCALES  # torch: only when asked for

    named = {"cheap": CHEAP_SCALES, "delf": DELF_SCALES}
    if text in named:
        return list(named[text])
    try:
        return [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise KitError(f"--scales '{text}': give 'cheap', 'delf' or numbers like 0.7071,1,1.4142") from None


def parse_params(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise KitError(f"--param '{item}': expected KEY=NUMBER, e.g. threshold=12")
    return out


def settings_from(args) -> dict:
    """Only the options given on the command line (see add_parser)."""
    ext = {"image_size": args.image_size, "max_keypoints": args.max_keypoints, "delf": args.delf,
           "scales": parse_scales(args.scales) if args.scales else None, "device": args.device}
    out = dict(data_dir=args.data_dir, train_pred=args.index, train_labels=args.labels,
               distractors=args.distractors, k=args.k, neighbours=args.candidates, ratio=args.ratio,
               transform=args.transform, ransac_threshold=args.ransac_threshold, n_jobs=args.threads,
               strict=args.strict, cache_dir=args.cache_dir,
               extractor_kw={k: v for k, v in ext.items() if v is not None})
    return {k: v for k, v in out.items() if v is not None}


def run(args) -> int:
    if not args.query:
        raise KitError("filter: give --query PRED (the prediction file to rescore)")
    chain = build_chain(args)
    truth = load_truth(args.solution) if args.solution else None
    if args.fit_on:
        fit_chain(chain, args.fit_on, truth, args.solution)
    set_params(chain, parse_params(args.param))
    pred = load_any(args.query)
    result = chain.apply(pred)
    save_predictions(result.predictions, args.out)
    if args.submission:
        from kit.submission import write_submission

        write_submission(result.predictions, args.submission)
    if args.fit_on or args.param or args.save:
        save_filter(chain, args.save or Path(args.out).with_suffix(".filter.json"))
    print_result(chain, pred, result, truth)
    print(f"wrote {args.out}" + (f" and {args.submission}" if args.submission else ""))
    return 0


def build_chain(args):
    """The chain named on the command line, or loaded with --load, in the mode asked for."""
    mode = "drop" if args.drop else "demote"
    if args.load and args.fit_on:
        raise KitError("filter: give --load (a fitted filter) or --fit-on (fit one now), not both")
    if args.fit_on and not args.solution:
        raise KitError("filter: --fit-on needs --solution (the truth of the fit-on images)")
    if not args.load:
        return build_filter(args.name, mode, settings_from(args))
    chain = load_filter(args.load, settings_from(args))
    for f in chain.filters:
        f.mode = mode
    return chain


def set_params(chain, params: dict) -> None:
    """--param values, each set on the filters that have it (KitError naming any no filter has)."""
    for f in chain.filters:
        f.params.update({k: v for k, v in params.items() if k in f.params})
    unknown = set(params) - {k for f in chain.filters for k in f.params}
    if unknown:
        raise KitError(f"--param: unknown parameter(s) {', '.join(sorted(unknown))} for {chain.name}")


def fit_chain(chain, files: list[str], truth, solution: str) -> None:
    """Fit `chain` on the top-1 predictions of `files` (ids missing from the truth are non-landmarks)."""
    fit = concat([load_any(p) for p in files], k=1)
    absent = len(set(fit.ids) - set(truth.frame["id"]))
    if absent:
        print(f"fit: {absent} of {len(fit)} ids are not in {solution}: counted as non-landmarks")
    per = chain.fit(fit, true_top1(fit, truth)).seconds["total"] / max(len(fit), 1)
    for f in chain.filters:
        r = f.fit_report
        print(f"fit {f.name}: GAP {r['gap_before']:.4f} -> {r['gap_after']:.4f} with {r['params']} "
              f"({per:.3f} s/image)")


def print_result(chain, pred, result, truth) -> None:
    """Rows passed, seconds per image (features and matching for delf/sift) and, with a truth, GAP before and
    after with the sensitivity and specificity of the pass/fail decision."""
    from kit.metrics import sensitivity_specificity  # pandas: not imported for `kit --help`

    seconds = result.seconds["total"]
    print(f"{chain.name}: {int(result.passed.sum())} of {len(pred)} predictions pass; "
          f"{seconds / max(len(pred), 1):.4f} s/image ({seconds:.1f} s for {len(pred)} images)")
    for f, stage in zip(chain.filters, result.stages):
        if "features" in stage.seconds:
            print(f"  {f.name}: features {stage.seconds['features']:.1f} s, matching {stage.seconds['matching']:.1f} s")
    if truth is not None and set(pred.ids) & set(truth.frame["id"]):
        true, out = true_top1(pred, truth), result.predictions
        sens, spec = sensitivity_specificity(result.passed, true >= 0)
        print(f"GAP {gap_top1(pred, true):.4f} -> {gap_top1(out, true_top1(out, truth)):.4f}; "
              f"sensitivity {sens:.3f}, specificity {spec:.3f}")
