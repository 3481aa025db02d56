import os
import numpy as np, pandas as pd
from kit.predictions import load_predictions
from kit.truth import load_truth
from kit.metrics import gap
W = os.environ.get('W', 'bench/work/r_op')
t = load_truth(W + '/data/test_solution.csv').frame
truth = {str(i): (l[0] if len(l) else -1) for i, l in zip(t.id, t.landmarks)}
p = load_predictions(W + '/pA/recipe_rerank/test.npz')
z = np.load(W + '/pA/recipe_rerank/test.inliers.npz'); top = dict(zip(z['ids'].astype(str), z['top_inliers']))
im = pd.read_csv(W + '/data/id_map.csv'); orig = dict(zip(im.id, im.original))
ids = np.asarray(p.ids).astype(str)
tr = np.array([truth.get(i, -1) for i in ids])
for thr in (1000, 50, 20):
    drop = np.array([(truth.get(i, 0) < 0) and top[i] >= thr for i in ids])
    print(thr, drop.sum(), round(gap(p.labels[~drop, 0], p.scores[~drop, 0], tr[~drop]), 4))
neg = [(orig[i], int(top[i])) for i in ids if truth.get(i, 0) < 0 and top[i] >= 10]
print(sorted(neg, key=lambda x: -x[1]))
