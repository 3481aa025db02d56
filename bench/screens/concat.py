"""concat.py OUT DIR1 DIR2 ...: OUT/{split}.npz with [e1/|e1| | e2/|e2| ...]/sqrt(n) embeddings (labels from DIR1)."""
import os
import sys, numpy as np
from pathlib import Path
from kit.predictions import load_predictions, save_predictions, Predictions
out, dirs = Path(sys.argv[1]), sys.argv[2:]
for s in ('train', 'val', 'test', 'distractors'):
    ps = [load_predictions(Path(d) / f'{s}.npz') for d in dirs]
    ids = ps[0].ids
    e = [p.reindex(ids).embeddings for p in ps]
    e = np.concatenate([x / np.linalg.norm(x, axis=1, keepdims=True) for x in e], 1) / np.sqrt(len(e))
    save_predictions(Predictions(ids, ps[0].labels, ps[0].scores, e.astype(np.float32)), out / f'{s}.npz')
    print(s, e.shape)
