"""Quick kNN screen: class = max cosine per class; GAP/top-1 on test and val (+distractors) for embedding dirs."""
import os
import sys, numpy as np, pandas as pd
sys.path.insert(0, 'bench')
from kit.predictions import load_predictions, Predictions
from kit.truth import load_truth
from real import score
W = os.environ.get('W', 'bench/work/r_op')
t = load_truth(W + '/data/test_solution.csv').frame
vs = load_truth(W + '/pA/folds/val_solution.csv').frame
tr = pd.read_csv(W + '/data/train.csv'); lab = dict(zip(tr.id.astype(str), tr.landmark_id))
def load(dirs, split):
    ps = [load_predictions(f'{d}/{split}.npz') for d in dirs]
    ids = ps[0].ids
    e = [p.reindex(ids).embeddings for p in ps]
    e = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in e]
    return np.asarray(ids).astype(str), np.concatenate(e, 1) / np.sqrt(len(e))
def knn(dirs, index_splits, qsplits):
    ii, ie = zip(*[load(dirs, s) for s in index_splits]); ii, ie = np.concatenate(ii), np.concatenate(ie)
    il = np.array([lab[i] for i in ii]); classes = np.unique(il)
    qi, qe = zip(*[load(dirs, s) for s in qsplits]); qi, qe = np.concatenate(qi), np.concatenate(qe)
    s = qe @ ie.T
    cs = np.stack([s[:, il == c].max(1) for c in classes], 1)
    o = np.argsort(-cs, 1)[:, :5]
    return Predictions(qi, classes[o], np.take_along_axis(cs, o, 1))
for spec in sys.argv[1:]:
    dirs = spec.split('+')
    te = knn(dirs, ['train', 'val'], ['test']); va = knn(dirs, ['train'], ['val', 'distractors'])
    print(spec, 'test', score(te, t), 'val', score(va, vs))
