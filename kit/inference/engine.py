"""Batched inference of a kit model: top-k original landmark ids, softmax confidences, embeddings. A TTA maps an
image batch to a list of views whose probabilities and embeddings are averaged (embeddings re-normalised)."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from kit.errors import KitError
from kit.inference.search import PRECISIONS
from kit.registry import Registry
from kit.predictions import Predictions

log = logging.getLogger("kit.inference.engine")


def tta_none(images):
    return [images]


def tta_hflip(images):
    return [images, images.flip(3)]


def tta_multiscale(scales: Sequence[float] = (0.707, 1.0, 1.414)) -> Callable:
    """Views resized by each scale (bilinear); pooling makes the model size-agnostic."""
    import torch.nn.functional as F

    def views(images):
        h, w = images.shape[-2:]
        return [images if s == 1.0 else
                F.interpolate(images, size=(max(8, round(h * s)), max(8, round(w * s))), mode="bilinear",
                              align_corners=False) for s in scales]
    return views


TTAS = Registry("TTA", {"none": lambda **kw: tta_none, "hflip": lambda **kw: tta_hflip,
                        "multiscale": lambda scales=(0.707, 1.0, 1.414), **kw: tta_multiscale(scales)})


def get_tta(tta=None, **kw) -> Callable:
    """None / a name in TTAS (kw e.g. scales= go to its factory) / a callable -> views callable."""
    return tta if callable(tta) else TTAS[tta or "none"](**kw)


def topk_predictions(probs, k: int, label_map) -> tuple[np.ndarray, np.ndarray]:
    """[B,C] probabilities -> (original landmark ids [B,k], scores [B,k]); -1/0 pad when k > C."""
    import torch

    scores, idx = torch.topk(probs.float(), min(k, probs.shape[1]), dim=1)
    pad = ((0, 0), (0, k - idx.shape[1]))
    return (np.pad(np.asarray(label_map, dtype=np.int64)[idx.cpu().numpy()], pad, constant_values=-1),
            np.pad(scores.cpu().numpy(), pad))


def _concat(out):
    """Backbone GeM and neck output, each L2-normalised, side by side (equal weight in a cosine)."""
    import torch
    import torch.nn.functional as F

    return torch.cat([F.normalize(out["pooled"].float(), dim=1), F.normalize(out["embeddings"].float(), dim=1)], 1)


# which vector of the model output is the image's embedding (cfg.predict.embedding)
EMBEDDINGS = Registry("embedding", {"neck": lambda out: out["embeddings"], "pooled": lambda out: out["pooled"],
                                   "concat": _concat})


def use_low_precision(precision: str, device, amp: bool = True) -> bool:
    """Whether inference autocasts (`forward_views` amp): "low" always, "fp32" never, "auto" on CUDA when
    `amp` is on. CPU bf16 stays opt-in: 2.8x faster on an AMX CPU (lite1 384 px) but its embeddings move
    enough (cosine to fp32 >= 0.99) to change 6% of test-to-test nearest neighbours on real photos."""
    if precision not in PRECISIONS:
        raise KitError(f"predict.precision: unknown '{precision}' (valid: {', '.join(PRECISIONS)})")
    if precision != "auto":
        return precision == "low"
    return str(device).startswith("cuda") and amp


def forward_views(model, images, tta: Callable, amp: bool = False, embedding: str = "neck"):
    """Softmax probabilities [B,C] and L2-normalised embeddings [B,D] (`embedding` names which vector)
    averaged over the TTA views; `amp` autocasts (fp16 on CUDA, bf16 on CPU), accumulating in fp32."""
    import torch
    import torch.nn.functional as F

    EMBEDDINGS.check(embedding, "predict.embedding: ")
    probs, embs = 0.0, 0.0
    views = tta(images)
    low = torch.float16 if images.device.type == "cuda" else torch.bfloat16
    with torch.autocast(device_type=images.device.type, dtype=low, enabled=amp):
        for v in views:
            out = model(v)
            probs = probs + F.softmax(out["logits"].float(), dim=1)
            embs = embs + F.normalize(EMBEDDINGS[embedding](out).float(), dim=1)
    return probs / len(views), F.normalize(embs, dim=1)


def predict_loader(model, loader, label_map, topk: int = 5, device="cpu", tta=None, amp: bool = False,
                   progress: bool = True, desc: str = "predict", embedding: str = "neck",
                   channels_last: bool = False) -> Predictions:
    """Run `model` over a loader of dict(image, id) batches -> Predictions (ids in loader order); undecodable
    images (batch["skipped"]) get an empty prediction after the others, with one warning."""
    import torch
    from kit.progress import progress as progress_bar

    device = torch.device(device)
    views = get_tta(tta)
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model = model.to(memory_format=fmt)
    ids, labels, scores, embs, skipped = [], [], [], [], []
    with torch.inference_mode():
        for batch in progress_bar(loader, desc=desc, disable=not progress, leave=False):
            skipped += [str(i) for i in (batch or {}).get("skipped", [])]
            if batch is None or "image" not in batch:
                continue
            images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=fmt)
            probs, emb = forward_views(model, images, views, amp=amp, embedding=embedding)
            lab, sc = topk_predictions(probs, topk, label_map)
            ids += [str(i) for i in batch["id"]]
            labels.append(lab)
            scores.append(sc)
            embs.append(emb.cpu().numpy())
    if skipped:
        log.warning("%s: %d image(s) undecodable, truncated or oversized: predicted as no landmark (first: %s)",
                    desc, len(skipped), ", ".join(skipped[:3]))
    if not ids:
        return Predictions(np.array(skipped, str), np.full((len(skipped), topk), -1, np.int64),
                           np.zeros((len(skipped), topk), np.float32))
    pred = Predictions(np.array(ids), np.concatenate(labels), np.concatenate(scores), np.concatenate(embs))
    return pred.reindex(np.concatenate([pred.ids, np.array(skipped, str)])) if skipped else pred
