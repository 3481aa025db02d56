exec(open("bench/screens/gates_common.py").read().split("report(\"inliers\"")[0])
R = np.load("bench/work/screens/RH_test.npy"); inl = R[..., 0]; H = R[..., 1:10].reshape(*R.shape[:2], 3, 3); bb = R[..., 10:14]
def quad(Hm, b):
    x0, y0, x1, y1 = b
    P = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], float)
    Q = P @ Hm.T
    w = Q[:, 2]
    if np.any(w <= 1e-9): return False, 0.0, 0.0
    q = Q[:, :2] / w[:, None]
    # convex & same orientation: cross products of consecutive edges all same sign
    e = np.roll(q, -1, 0) - q
    cr = e[:, 0] * np.roll(e, -1, 0)[:, 1] - e[:, 1] * np.roll(e, -1, 0)[:, 0]
    convex = np.all(cr > 0) or np.all(cr < 0)
    a1 = (x1 - x0) * (y1 - y0)
    a2 = 0.5 * abs(np.dot(q[:, 0], np.roll(q[:, 1], -1)) - np.dot(q[:, 1], np.roll(q[:, 0], -1)))
    # side-length ratio distortion
    side = np.linalg.norm(e, axis=1); sp = np.array([x1-x0, y1-y0, x1-x0, y1-y0])
    r = side / np.maximum(sp, 1e-6)
    return convex, a2 / max(a1, 1e-6), float(r.max() / max(r.min(), 1e-9))
conv = np.zeros(inl.shape, bool); ar = np.zeros(inl.shape); dist = np.full(inl.shape, 1e9)
aff = H[..., :2, :2]; sv = np.linalg.svd(aff, compute_uv=False); cond = sv[..., 0] / np.maximum(sv[..., 1], 1e-9)
for i in range(inl.shape[0]):
    for c in range(inl.shape[1]):
        if inl[i, c] >= 4:
            conv[i, c], ar[i, c], dist[i, c] = quad(H[i, c], bb[i, c])
report("inliers", inl)
for lo, hi in ((4, 6), (7, 9), (10, 12), (13, 1000)):
    s = same & (inl >= lo) & (inl <= hi); df = diff & (inl >= lo) & (inl <= hi)
    print(f"inl {lo}-{hi}: same n={s.sum()} convex {np.mean(conv[s]):.2f} dist<4 {np.mean(dist[s]<4):.2f} cond<10 {np.mean(cond[s]<10):.2f}| diff n={df.sum()} convex {np.mean(conv[df]):.2f} dist<4 {np.mean(dist[df]<4):.2f} cond<10 {np.mean(cond[df]<10):.2f}")
report("convex", np.where(conv, inl, 0))
for d0 in (3, 4, 6, 10):
    report(f"convex & dist<{d0}", np.where(conv & (dist < d0), inl, 0))
for a0 in (8, 16):
    report(f"convex & area in 1/{a0}..{a0}", np.where(conv & (ar > 1/a0) & (ar < a0), inl, 0))
report("cond<10", np.where(cond < 10, inl, 0))
report("cond<10 & convex", np.where((cond < 10) & conv, inl, 0))
np.save("bench/work/screens/gates_test.npy", np.stack([conv, ar, dist, cond]))
