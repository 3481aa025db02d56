import os
import sys, numpy as np, pandas as pd
from kit.predictions import load_predictions
from kit.truth import load_truth
W = os.environ.get('W', 'bench/work/r_op'); d = sys.argv[1]
t = load_truth(W + '/data/test_solution.csv').frame
truth = {str(i): (l[0] if len(l) else -1) for i, l in zip(t.id, t.landmarks)}
p = load_predictions(d + '/recipe_rerank/test.npz')
z = np.load(d + '/recipe_rerank/test.inliers.npz', allow_pickle=False)
top = dict(zip(z['ids'].astype(str), z['top_inliers'])); ref = dict(zip(z['ids'].astype(str), z['reference']))
rows = []
for n, i in enumerate(map(str, p.ids)):
    if i not in truth: continue
    tt = truth[i]
    kind = 'neg' if tt < 0 else ('ok' if p.labels[n, 0] == tt else 'wrong')
    rows.append((i, kind, float(p.scores[n, 0]), int(top[i]), float(ref[i])))
df = pd.DataFrame(rows, columns=['id', 'kind', 'score', 'inl', 'ref']).sort_values('score', ascending=False).reset_index(drop=True)
df['verified'] = df.inl >= 10
print(df.groupby(['kind', 'verified']).agg(n=('score', 'size'), med=('score', 'median'), mn=('score', 'min'), mx=('score', 'max')))
ok = df[df.kind == 'ok']
print('negatives above each decile of correct scores:')
for q in (0.9, 0.75, 0.5, 0.25, 0.1):
    s = ok.score.quantile(q); print(q, round(s, 3), 'neg above', int(((df.kind == 'neg') & (df.score > s)).sum()), 'wrong above', int(((df.kind == 'wrong') & (df.score > s)).sum()))
print(df[df.kind != 'ok'].head(25).to_string())
