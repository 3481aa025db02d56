"""Screen: homography inliers + plausibility (inlier hull area, scale change) on cached candidate pairs."""
import sys, time, numpy as np, pandas as pd, cv2
from joblib import Parallel, delayed
from kit.localfeatures.verification import Verification, parallel_features
from kit.localfeatures.matching import match_descriptors
from kit.layout import find_image

work = sys.argv[1]; split = sys.argv[2]
d = np.load(f"{work}/pipeline/recipe_rerank/{split}.inliers.npz")
ids, nb, h0 = d["ids"], d["neighbours"], d["inliers"]
v = Verification(); ext = v.build_extractor()
need = sorted(set(ids) | set(nb[nb != ""].ravel()))
feats = parallel_features(ext, need, [find_image(f"{work}/data", i) for i in need], f"{work}/cache", 2, False)

def hull(p):
    if len(p) < 3: return 0.0
    return float(cv2.contourArea(cv2.convexHull(p.reshape(-1, 1, 2))))

def one(a, b):
    fa, fb = feats[a], feats[b]
    m = match_descriptors(fa.descriptors, fb.descriptors, ratio=0.9, mutual=True)
    p1 = fa.keypoints[m[:, 0]].astype(np.float32); p2 = fb.keypoints[m[:, 1]].astype(np.float32)
    if len(p1) < 4: return [0] + [0.0] * 13
    cv2.setRNGSeed(0)
    H, mk = cv2.findHomography(p1.reshape(-1,1,2), p2.reshape(-1,1,2), cv2.USAC_MAGSAC, 8.0, maxIters=1000)
    if H is None or mk is None: return [0] + [0.0] * 13
    k = mk.ravel().astype(bool)
    A = H[:2, :2] / H[2, 2]
    det = float(np.linalg.det(A))
    s = np.linalg.svd(A, compute_uv=False)
    spread = 0.0
    if k.sum() >= 2:
        spread = float(np.median(np.linalg.norm(p1[k] - np.median(p1[k], 0), axis=1)))
    lo = p1[k].min(0); hi = p1[k].max(0)
    return [int(k.sum()), *(H / H[2, 2]).ravel().tolist(), lo[0], lo[1], hi[0], hi[1]]

t = time.time()
pairs = [(i, c) for i in range(len(ids)) for c in range(nb.shape[1]) if nb[i, c] != ""]
res = Parallel(n_jobs=2, prefer="threads", batch_size=64)(delayed(one)(ids[i], nb[i, c]) for i, c in pairs)
print("pairs", len(pairs), time.time() - t, flush=True)
R = np.zeros((len(ids), nb.shape[1], 14)); 
for (i, c), x in zip(pairs, res): R[i, c] = x
print("equal to cached:", np.mean([R[i, c, 0] == h0[i, c] for i, c in pairs]))
np.save(f"bench/work/screens/RH_{split}.npy", R)
