"""Train DefectNet's heads on generated, labelled parts (CPU, minutes).

The backbone is frozen, so its features are computed once per tile and the heads train
on the cache. Training images come from their own seed block, disjoint from the blocks
`defectflow data synth` uses for test splits (seed 0 by default), so evaluation never
sees a training image.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from models.anomaly.patchcore import PatchFeatures
from models.supervised.defectnet import STRIDE, DefectNet, Heads, box_targets, losses
from services.common.domain import Rect
from services.common.synthetic import DEFECT_TYPES, FAMILIES, FAMILY_DEFECTS, render_part
from services.tiling.logic import preprocess, tile_grid

TRAIN_SEED_BLOCK = 7_000_000
MIN_TILE_DEFECT_PX = 10  # a tile with fewer defect pixels is labelled good for classification
OPSET = 17


@dataclass(frozen=True)
class TrainConfig:
    tile: int = 128
    overlap: int = 16
    per_type: int = 32  # images per family and defect type (half subtle)
    good_per_family: int = 20
    epochs: int = 50
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0
    classes: tuple[str, ...] = DEFECT_TYPES
    families: tuple[str, ...] = FAMILIES


def tile_targets(mask_tile: np.ndarray, label: int, cells: int):
    """(seg target [cells, cells], boxes [(x0,y0,x1,y1,k)], cls target) of one tile.
    `label` is the defect class index 0..K-1, or -1 for a good image."""
    defect = mask_tile > 0
    seg = np.zeros((cells, cells), np.int64)
    boxes = []
    cls = 0
    if label >= 0 and defect.any():
        cover = cv2.resize(defect.astype(np.float32), (cells, cells), interpolation=cv2.INTER_AREA)
        seg[cover > 0] = label + 1
        n, _, stats, _ = cv2.connectedComponentsWithStats(defect.astype(np.uint8))
        for x, y, w, h, a in stats[1:]:
            if a >= 4:
                boxes.append((float(x), float(y), float(x + w), float(y + h), label))
        if defect.sum() >= MIN_TILE_DEFECT_PX:
            cls = label + 1
    return seg, boxes, cls


def build_dataset(cfg: TrainConfig, progress: Callable[[int, int], None] | None = None):
    rng = np.random.default_rng(cfg.seed)
    jobs = []
    for f_i, fam in enumerate(cfg.families):
        for s in range(cfg.good_per_family):
            jobs.append((fam, TRAIN_SEED_BLOCK + f_i * 10_000 + s, None, "none"))
        for t in FAMILY_DEFECTS[fam]:
            if t not in cfg.classes:
                continue
            for s in range(cfg.per_type):
                sev = "obvious" if s % 2 == 0 else "subtle"
                seed = TRAIN_SEED_BLOCK + 500_000 + f_i * 10_000 + cfg.classes.index(t) * 1000 + s
                jobs.append((fam, seed, t, sev))
    tiles, segs, boxes, clss = [], [], [], []
    cells = cfg.tile // STRIDE
    for n, (fam, seed, kind, sev) in enumerate(jobs, 1):
        img, truth = render_part(fam, seed, (512, 512), kind, sev)
        rects = tile_grid(Rect(0, 0, 512, 512), cfg.tile, cfg.overlap)
        label = cfg.classes.index(kind) if kind else -1
        hit = [r for r in rects if truth.mask[r.y : r.y1, r.x : r.x1].any()]
        miss = [r for r in rects if r not in hit]
        pick = hit + [miss[i] for i in rng.choice(len(miss), 2 if hit else 4, replace=False)]
        tiles.append(preprocess(img, pick, cfg.tile, (0.5,) * 3, (0.5,) * 3))
        for r in pick:
            s_t, b_t, c_t = tile_targets(truth.mask[r.y : r.y1, r.x : r.x1], label, cells)
            segs.append(s_t)
            boxes.append(b_t)
            clss.append(c_t)
        if progress:
            progress(n, len(jobs))
    return np.concatenate(tiles), np.stack(segs), boxes, np.array(clss)


@torch.no_grad()
def cache_features(tiles: np.ndarray, batch: int = 32) -> torch.Tensor:
    feats = PatchFeatures().eval()
    return torch.cat(
        [feats(torch.as_tensor(tiles[i : i + batch])).half() for i in range(0, len(tiles), batch)]
    )


def train_heads(
    cfg: TrainConfig, log: Callable[[str], None] = print
) -> tuple[Heads, dict[str, float]]:
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    tiles, segs, boxes, clss = build_dataset(cfg)
    feats = cache_features(tiles)
    cells = cfg.tile // STRIDE
    det_t, reg_t, pos_t = zip(*(box_targets(b, cells) for b in boxes), strict=True)
    det_t, reg_t, pos_t = torch.stack(det_t), torch.stack(reg_t), torch.stack(pos_t)
    seg_t, cls_t = torch.as_tensor(segs), torch.as_tensor(clss)
    log(
        f"{len(tiles)} tiles ({int((cls_t > 0).sum())} with defects), "
        f"features in {time.perf_counter() - t0:.0f} s"
    )
    heads = Heads(len(cfg.classes))
    opt = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, cfg.lr, total_steps=cfg.epochs * -(-len(feats) // cfg.batch)
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    last: dict[str, float] = {}
    for epoch in range(cfg.epochs):
        heads.train()
        order = torch.randperm(len(feats), generator=gen)
        sums: dict[str, float] = {}
        for i in range(0, len(order), cfg.batch):
            j = order[i : i + cfg.batch]
            out = heads(feats[j].float())
            parts = losses(out, (seg_t[j], det_t[j], reg_t[j], pos_t[j], cls_t[j]))
            loss = parts["seg"] + parts["det"] + parts["box"] + parts["cls"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(j)
        last = {k: v / len(feats) for k, v in sums.items()}
        if epoch % 10 == 9 or epoch == cfg.epochs - 1:
            log(f"epoch {epoch + 1}: " + " ".join(f"{k} {v:.3f}" for k, v in last.items()))
    heads.eval()
    last["train_seconds"] = time.perf_counter() - t0
    return heads, last


def export_onnx(net: DefectNet, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 3, net.tile, net.tile, dtype=torch.float16)
    names = ["seg_logits", "detections", "cls_logits"]
    torch.onnx.export(
        net.eval(),
        (dummy,),
        str(path),
        input_names=["tiles"],
        output_names=names,
        dynamic_axes={"tiles": {0: "batch"}, **{n: {0: "batch"} for n in names}},
        opset_version=OPSET,
        dynamo=False,
    )
    return path


def save(heads: Heads, cfg: TrainConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"heads": heads.state_dict(), "classes": list(cfg.classes), "tile": cfg.tile}, path)


def load(path: Path) -> DefectNet:
    state = torch.load(path, map_location="cpu", weights_only=True)
    heads = Heads(len(state["classes"]))
    heads.load_state_dict(state["heads"])
    return DefectNet(heads.eval(), int(state["tile"])).eval()
