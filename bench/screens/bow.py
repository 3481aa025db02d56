"""Screen: bag of visual words (RootSIFT, codebook on the index) as a class signal next to the CNN kNN."""
import sys, time, numpy as np, pandas as pd, faiss, scipy.sparse as sp
from kit.localfeatures.verification import Verification, parallel_features
from kit.layout import find_image
work = "bench/work/r_op"; K = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
train = pd.read_csv(f"{work}/data/train.csv", dtype=str)
sol = pd.read_csv(f"{work}/data/test_solution.csv", dtype=str, keep_default_na=False)
tid, tlab = train.id.values, train.landmark_id.values
qid, truth = sol.id.values, sol.landmarks.values
ext = Verification().build_extractor()
ids = list(tid) + list(qid)
F = parallel_features(ext, ids, [find_image(f"{work}/data", i) for i in ids], f"{work}/cache", 2, False)
X = np.concatenate([F[i].descriptors for i in tid]).astype(np.float32)
t = time.time()
km = faiss.Kmeans(X.shape[1], K, niter=20, seed=0, verbose=False); km.train(X)
print("kmeans", X.shape, K, round(time.time() - t, 1), flush=True)
def bow(idlist):
    rows, cols = [], []
    for r, i in enumerate(idlist):
        d = F[i].descriptors.astype(np.float32)
        if len(d) == 0: continue
        _, a = km.index.search(d, 1); cols.append(a[:, 0]); rows.append(np.full(len(a), r))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(idlist), K))
B_t, B_q = bow(tid), bow(qid)
df = np.asarray((B_t > 0).sum(0)).ravel(); idf = np.log(len(tid) / np.maximum(df, 1)).astype(np.float32)
def norm(B):
    B = B.multiply(idf[None, :]).tocsr(); B.data = np.sqrt(B.data)  # burstiness: square-root of tf-idf
    n = np.sqrt(np.asarray(B.multiply(B).sum(1)).ravel()) + 1e-9
    return sp.diags(1 / n) @ B
S = (norm(B_q) @ norm(B_t).T).toarray()
E = np.load(f"{work}/repro/recipe/test.npz"); Et = {k: np.concatenate([np.load(f"{work}/repro/recipe/{s}.npz")[k] for s in ("train", "val")]) for k in ("ids", "embeddings")}
assert list(E["ids"]) == list(qid) or True
eq = dict(zip(E["ids"], E["embeddings"])); et = dict(zip(Et["ids"], Et["embeddings"]))
Q = np.stack([eq[i] for i in qid]); T = np.stack([et[i] for i in tid])
Q /= np.linalg.norm(Q, axis=1, keepdims=True); T /= np.linalg.norm(T, axis=1, keepdims=True)
C = Q @ T.T
classes = np.unique(tlab)
def per_class(M):
    return np.stack([M[:, tlab == c].max(1) for c in classes], 1)
land = truth != ""
sub = pd.read_csv(f"{work}/repro/submission.csv", dtype=str, keep_default_na=False).set_index("id")["landmarks"]
default_right = np.array([sub[i].split()[0] == t if t else False for i, t in zip(qid, truth)])
from kit.metrics import gap
for name, M in (("cnn", C), ("bow", S), ("cnn+bow z", None)):
    if M is None:
        Pc, Pb = per_class(C), per_class(S)
        P = (Pc - Pc.mean()) / Pc.std() + (Pb - Pb.mean()) / Pb.std()
    else:
        P = per_class(M)
    pred = classes[P.argmax(1)]; conf = P.max(1)
    right = pred == truth
    wrong_default = land & ~default_right
    print(f"{name:10s} top1 {right[land].mean():.3f}  right on the default's {wrong_default.sum()} wrong: {right[wrong_default].sum()}")
d = np.load(f"{work}/repro/recipe_rerank/test.inliers.npz")
tr = dict(zip(tid, tlab))
cand_classes = [set(tr[n] for n in row if n) for row in d["neighbours"]]
for k in (3, 5, 10):
    topb = np.argsort(-S, 1)[:, :k]
    new = [set(tlab[topb[i]]) - cand_classes[i] for i in range(len(qid))]
    gained = [i for i in range(len(qid)) if land[i] and truth[i] in new[i]]
    print(f"BoW top-{k}: landmark queries whose true class only BoW brings: {len(gained)}", [qid[i] for i in gained if not default_right[i]])
