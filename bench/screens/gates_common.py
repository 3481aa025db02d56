import numpy as np, pandas as pd
from sklearn.metrics import roc_auc_score
work = "bench/work/r_op"
d = np.load(f"{work}/pipeline/recipe_rerank/test.inliers.npz"); ids, nb = d["ids"], d["neighbours"]
R = np.load("bench/work/screens/RH_test.npy")
train = pd.read_csv(f"{work}/data/train.csv", dtype=str).set_index("id")["landmark_id"]
sol = pd.read_csv(f"{work}/data/test_solution.csv", dtype=str, keep_default_na=False).set_index("id")["landmarks"]
truth = np.array([sol.get(i, "") for i in ids]); land = truth != ""
lab = np.vectorize(lambda r: train.get(r, "") if r else "")(nb)
valid = nb != ""
same = (lab == truth[:, None]) & land[:, None] & valid
diff = (~same) & valid
inl, h1, h2, det, cond, nm, spread = [R[..., k] for k in range(7)]
def report(name, S):
    best = S.argmax(1); b = S[np.arange(len(ids)), best]; bc = lab[np.arange(len(ids)), best]
    right = land & (bc == truth); neg = b[~land]
    o = [f"{name:28s}"]
    for spec in (0.98, 0.99):
        thr = np.quantile(neg, spec, method="higher"); o.append(f"sp{spec} thr {thr:.2f} sens {np.mean(right[land] & (b[land] > thr)):.3f}")
    o.append(f"AUC {roc_auc_score(np.r_[np.ones(same.sum()), np.zeros(diff.sum())], np.r_[S[same], S[diff]]):.4f}")
    print(" | ".join(o))
report("inliers", inl)
area = np.minimum(h1, h2)
print("hull area of pairs with 8-15 inliers: same p10/50/90", np.percentile(area[same & (inl>=8)&(inl<=15)], [10,50,90]).round(), "diff", np.percentile(area[diff & (inl>=8)&(inl<=15)], [10,50,90]).round())
print("cond same", np.percentile(cond[same & (inl>=8)], [10,50,90]).round(2), "diff", np.percentile(cond[diff & (inl>=8)&(inl<=15)], [10,50,90]).round(2))
print("det same", np.percentile(np.abs(det[same & (inl>=8)]), [5,50,95]).round(2), "diff", np.percentile(np.abs(det[diff & (inl>=8)&(inl<=15)]), [5,50,95]).round(2))
print("spread same", np.percentile(spread[same & (inl>=8)&(inl<=15)], [10,50,90]).round(1), "diff", np.percentile(spread[diff & (inl>=8)&(inl<=15)], [10,50,90]).round(1))
for a0 in (500, 1000, 2000, 4000, 8000):
    report(f"inl*min(1,area/{a0})", inl * np.minimum(1, area / a0))
for c0 in (3, 5, 10):
    report(f"inl if cond<{c0}", np.where(cond < c0, inl, 0))
for lo, hi in ((0.1, 10), (0.25, 4)):
    report(f"inl if det in [{lo},{hi}]", np.where((np.abs(det) > lo) & (np.abs(det) < hi), inl, 0))
report("inl*sqrt(min(1,spread/30))", inl * np.sqrt(np.minimum(1, spread / 30)))
report("inl/log(matches)", inl / np.log(np.maximum(nm, 3)))
print("--- low counts")
for lo, hi in ((4, 6), (7, 9), (10, 12), (13, 20), (21, 1000)):
    s = same & (inl >= lo) & (inl <= hi); df = diff & (inl >= lo) & (inl <= hi)
    print(f"inl {lo}-{hi}: same n={s.sum()} cond<10 {np.mean(cond[s]<10):.2f} | diff n={df.sum()} cond<10 {np.mean(cond[df]<10):.2f}")
for c0 in (5, 10, 20, 50):
    for m in (0, 0.5):
        report(f"cond<{c0} else {m}*inl", np.where(cond < c0, inl, m * inl))
