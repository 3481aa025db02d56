"""Screen: fundamental-matrix vs homography inlier counts on the cached candidate pairs of a bench run."""
import sys, time, numpy as np, pandas as pd, cv2
from joblib import Parallel, delayed
from kit.localfeatures.verification import Verification, parallel_features
from kit.localfeatures.matching import match_descriptors
from kit.layout import find_image

work = sys.argv[1]; split = sys.argv[2] if len(sys.argv) > 2 else "test"
d = np.load(f"{work}/pipeline/recipe_rerank/{split}.inliers.npz")
ids, nb, h0 = d["ids"], d["neighbours"], d["inliers"]
train = pd.read_csv(f"{work}/data/train.csv", dtype=str).set_index("id")["landmark_id"]
if split == "test":
    sol = pd.read_csv(f"{work}/data/test_solution.csv", dtype=str, keep_default_na=False).set_index("id")["landmarks"]
    truth = np.array([sol.get(i, "") for i in ids])
else:
    truth = np.array([train.get(i, "") if isinstance(train.get(i, ""), str) else "" for i in ids])
v = Verification(); ext = v.build_extractor()
need = sorted(set(ids) | set(nb[nb != ""].ravel()))
t = time.time()
feats = parallel_features(ext, need, [find_image(f"{work}/data", i) for i in need], f"{work}/cache", 2, False)
print("features", len(feats), time.time() - t, flush=True)

def pts(a, b):
    fa, fb = feats[a], feats[b]
    m = match_descriptors(fa.descriptors, fb.descriptors, ratio=0.9, mutual=True)
    return fa.keypoints[m[:, 0]].astype(np.float32), fb.keypoints[m[:, 1]].astype(np.float32)

def counts(a, b):
    p1, p2 = pts(a, b)
    out = []
    cv2.setRNGSeed(0)
    if len(p1) >= 4:
        H, mh = cv2.findHomography(p1, p2, cv2.USAC_MAGSAC, 8.0, maxIters=1000); out.append(0 if mh is None else int(mh.sum()))
    else: out.append(0)
    for thr in (1.0, 2.0, 4.0):
        cv2.setRNGSeed(0)
        if len(p1) >= 8:
            F, mf = cv2.findFundamentalMat(p1, p2, cv2.USAC_MAGSAC, thr, 0.999, 1000)
            out.append(0 if mf is None or F is None else int(mf.sum()))
        else: out.append(0)
    out.append(len(p1))
    return out

pairs = [(i, r, c) for i in range(len(ids)) for c, r in enumerate([x for x in nb[i]]) if r != ""]
t = time.time()
res = Parallel(n_jobs=2, prefer="threads", batch_size=64)(delayed(counts)(ids[i], r) for i, r, _ in pairs)
print("pairs", len(pairs), time.time() - t, flush=True)
res = np.array(res)
names = ["H8", "F1", "F2", "F4", "matches"]
C = np.zeros((len(ids), nb.shape[1], len(names)), int)
for (i, r, c), x in zip(pairs, res): C[i, c] = x
hmatch = np.mean([C[i, c, 0] == h0[i, c] for i, r, c in pairs])
print("H8 equals cached:", hmatch)
lab = np.vectorize(lambda r: train.get(r, "") if r else "")(nb)
land = truth != ""
for k, nm in enumerate(names):
    S = C[:, :, k]
    best = S.argmax(1); bscore = S[np.arange(len(ids)), best]; bcls = lab[np.arange(len(ids)), best]
    right = land & (bcls == truth)
    neg = bscore[~land]
    out = [nm]
    for spec in (0.98, 0.99):
        thr = np.quantile(neg, spec, method="higher")
        out.append(f"spec{spec}: thr {thr} sens {np.mean(right[land] & (bscore[land] > thr)):.3f}")
    # pair-level: same class vs different, inliers
    same = (lab == truth[:, None]) & land[:, None] & (nb != "")
    diff = (~same) & (nb != "")
    from sklearn.metrics import roc_auc_score
    y = np.r_[np.ones(same.sum()), np.zeros(diff.sum())]
    out.append(f"pairAUC {roc_auc_score(y, np.r_[S[same], S[diff]]):.4f}")
    out.append(f"neg p50/p98/max {np.median(neg):.0f}/{np.quantile(neg,0.98):.0f}/{neg.max()}")
    print(" | ".join(out), flush=True)
np.save(f"bench/work/screens/C_{split}.npy", C)
