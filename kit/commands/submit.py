"""`kit submit --competition C [--file submission.csv]`: validate against sample_submission.csv, then submit.

The same as `kaggle competitions submit -c C -f FILE -m M`; code competitions: `--kernel user/slug
--version N` submits that notebook version's output. `--dry-run` checks and prints the equivalent
`kaggle competitions submit ...` command without calling Kaggle; `--wait` polls until the submission is
scored and prints the public score.
"""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from kit.kaggle import COMPETITION

    p = sub.add_parser("submit", help="validate a submission.csv and submit it to Kaggle", description=__doc__)
    p.add_argument("--competition", "-c", default=COMPETITION, help=f"competition slug (default: {COMPETITION})")
    p.add_argument("--file", "-f", default="submission.csv",
                   help="submission CSV (with --kernel: the notebook's output file name; default submission.csv)")
    p.add_argument("--message", "-m", default="", help="submission description (default: empty)")
    p.add_argument("--sample", help="sample_submission.csv to check ids against (default: download it)")
    p.add_argument("--kernel", "-k", help="code competitions: the notebook, <owner>/<slug> (default: none, submit --file)")
    p.add_argument("--version", "-v", type=int, help="code competitions: the notebook version to submit (>= 1; default: none)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and print the equivalent `kaggle competitions submit` command; no Kaggle call")
    p.add_argument("--wait", type=int, nargs="?", const=0, metavar="SECONDS",
                   help="poll until Kaggle scores the submission and print its public score (SECONDS: give up "
                        "after; none or 0 = up to 12 h; default: no polling)")
    p.add_argument("--poll-interval", type=int, default=60, help="seconds between polls with --wait (default 60)")
    p.set_defaults(func=run, opencv=False)  # no images: no cv2 import


def run(args: argparse.Namespace) -> int:
    from kit.kaggle.submit import submit

    result = submit(args.competition, args.file, args.message, sample=args.sample, kernel=args.kernel,
                    version=args.version, dry_run=args.dry_run, wait=args.wait, poll_interval=args.poll_interval)
    if result:
        print(f"{args.competition}: {result}")
    return 0
