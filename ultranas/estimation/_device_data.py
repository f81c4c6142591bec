"""A detection split decoded once onto the device, and batched augmentation that runs there.

``DeviceDataset`` letterboxes every image of a split once into a uint8 tensor ``[N, 3, S, S]`` (RGB) on the
device, with labels padded to ``[N, M, 5]`` (class, normalised xywh). ``DeviceAugment`` turns a vector of image
indices into an Ultralytics batch dict (``img`` float 0-1, ``cls``, ``bboxes``, ``batch_idx``) with Ultralytics'
default detection augmentations re-done as batched tensor ops, all drawn from one ``torch.Generator``:
2x2 mosaic, random scale/translate (``F.affine_grid`` + ``grid_sample``; boxes moved, clipped and filtered like
``RandomPerspective.box_candidates``), HSV-style colour jitter (one 3x3 colour matrix per image) and horizontal flip.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import load_data_yaml, safe_data_yaml
from ..errors import UserError
from ._images import letterboxed, split_files
from ._torch import torch_device

__all__ = ["DeviceAugment", "DeviceDataset", "to_batch", "torch_device"]

PAD = 114.0  # Ultralytics' letterbox / border grey (0-255)
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
_RGB = torch.linalg.inv(_YIQ)


class DeviceDataset:
    """Every image of one split, letterboxed to ``imgsz`` once, held on ``device``.

    Args:
        data_yaml: data YAML (or ``coco8``).
        imgsz: square side S of the stored images.
        device: where the tensors live.
        split: ``train`` or ``val``.
        fraction: keep the first ``round(N * fraction)`` images of the sorted split (as Ultralytics does).
        single_cls: map every class to 0.
    """

    def __init__(self, data_yaml: str | Path, imgsz: int, device: str | torch.device = "cpu", split: str = "train",
                 fraction: float = 1.0, single_cls: bool = False):
        self.data_yaml = safe_data_yaml(data_yaml, check_labels=False)  # what Ultralytics' validator reads
        cfg = load_data_yaml(self.data_yaml)
        image_dir, files = split_files(self.data_yaml, split)
        files = files[:max(1, round(len(files) * fraction))]
        if len(files) < 2:
            raise UserError(f"{split} split {image_dir} has {len(files)} image(s): the fast trainer needs at least 2")
        self.imgsz, self.device, self.single_cls = int(imgsz), torch_device(device), single_cls
        self.names = {0: "item"} if single_cls else cfg["names"]
        self.nc = len(self.names)
        imgs, labels = np.empty((len(files), imgsz, imgsz, 3), np.uint8), []
        for i, (img, lab) in enumerate(letterboxed(image_dir, files, imgsz)):
            imgs[i] = img
            if single_cls:
                lab[:, 0] = 0
            labels.append(lab)
        self.images = torch.from_numpy(np.ascontiguousarray(imgs[..., ::-1].transpose(0, 3, 1, 2))).to(self.device)
        self.counts = torch.tensor([len(x) for x in labels], device=self.device)
        padded = np.zeros((len(files), max(1, max(len(x) for x in labels)), 5), np.float32)
        for i, lab in enumerate(labels):
            padded[i, :len(lab)] = lab
        self.labels = torch.from_numpy(padded).to(self.device)
        self.files = files

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx: torch.Tensor) -> dict:
        """Un-augmented Ultralytics batch dict for image indices ``idx``."""
        lab = self.labels[idx]
        return to_batch(self.images[idx].float() / 255, lab, self._valid(idx, lab.shape[1]))

    def _valid(self, idx: torch.Tensor, m: int) -> torch.Tensor:
        return torch.arange(m, device=self.device) < self.counts[idx, None]


def to_batch(img: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> dict:
    """Padded labels ``[B, M, 5]`` with mask ``[B, M]`` -> Ultralytics' flat ``cls``/``bboxes``/``batch_idx``."""
    b, m = valid.shape
    flat = labels[valid]
    batch_idx = torch.arange(b, device=img.device).repeat_interleave(m).view(b, m)[valid]
    return {"img": img, "cls": flat[:, :1], "bboxes": flat[:, 1:], "batch_idx": batch_idx.float()}


class DeviceAugment:
    """Batched Ultralytics-style augmentation on the device (defaults are Ultralytics' ``default.yaml``).

    Args:
        data: the :class:`DeviceDataset` to draw from.
        generator: seeds every random draw (must live on ``data.device``).
        hsv_h, hsv_s, hsv_v: colour jitter gains (hue as a fraction of a full turn).
        translate: random shift, a fraction of the image side.
        scale: random zoom in ``[1 - scale, 1 + scale]``.
        fliplr: horizontal flip probability.
    """

    def __init__(self, data: DeviceDataset, generator: torch.Generator, hsv_h: float = 0.015, hsv_s: float = 0.7,
                 hsv_v: float = 0.4, translate: float = 0.1, scale: float = 0.5, fliplr: float = 0.5):
        self.data, self.gen = data, generator
        self.hsv, self.translate, self.scale, self.fliplr = (hsv_h, hsv_s, hsv_v), translate, scale, fliplr

    @classmethod
    def from_hyp(cls, data: DeviceDataset, generator: torch.Generator, hyp) -> DeviceAugment:
        """The augmentation Ultralytics' hyper-parameters ``hyp`` describe (hsv, translate, scale, fliplr)."""
        return cls(data, generator, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v, hyp.translate, hyp.scale, hyp.fliplr)

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen, device=self.data.device)

    def __call__(self, idx: torch.Tensor, mosaic: float = 0.0) -> dict:
        """Augmented batch dict for image indices ``idx``; each image is a mosaic with probability ``mosaic``."""
        ds, s, b = self.data, self.data.imgsz, len(idx)
        if mosaic <= 0 or mosaic >= 1:  # the usual cases: no split of the batch, no host sync
            src, labels, valid = self._mosaic(idx) if mosaic >= 1 else self._single(idx)
            img, labels, valid = self._affine(src, labels, valid, mosaic >= 1)
        else:
            img = torch.empty(b, 3, s, s, device=ds.device)
            labels = ds.labels.new_zeros(b, 4 * ds.labels.shape[1], 5)
            valid = torch.zeros(b, labels.shape[1], dtype=torch.bool, device=ds.device)
            use = self._rand(b) < mosaic
            for sel, is_mosaic in ((use.nonzero().squeeze(1), True), ((~use).nonzero().squeeze(1), False)):
                if len(sel):
                    src, lab, val = self._mosaic(idx[sel]) if is_mosaic else self._single(idx[sel])
                    img[sel], lab, val = self._affine(src, lab, val, is_mosaic)
                    labels[sel, :lab.shape[1]], valid[sel, :lab.shape[1]] = lab, val
        return to_batch(self._colour(img), labels, valid)

    def _single(self, idx: torch.Tensor):
        lab = self.data.labels[idx]
        return self.data.images[idx].float(), lab, self.data._valid(idx, lab.shape[1])

    def _mosaic(self, idx: torch.Tensor):
        """2x2 tiles on a 2S canvas: image ``idx`` top-left, three random images of the split in the other cells."""
        ds, s, b = self.data, self.data.imgsz, len(idx)
        extra = torch.randint(len(ds), (b, 3), generator=self.gen, device=ds.device)
        idx4 = torch.cat([idx[:, None], extra], 1)  # [b, 4]
        canvas = torch.empty(b, 3, 2 * s, 2 * s, device=ds.device)
        for cell in range(4):
            y, x = cell // 2 * s, cell % 2 * s
            canvas[:, :, y:y + s, x:x + s] = ds.images[idx4[:, cell]]
        lab = ds.labels[idx4]  # [b, 4, M, 5]
        m = lab.shape[2]
        val = ds._valid(idx4.flatten(), m).view(b, 4, m)
        cell = torch.arange(4, device=ds.device)
        lab[..., 1] = (lab[..., 1] + (cell % 2)[None, :, None]) / 2
        lab[..., 2] = (lab[..., 2] + (cell // 2)[None, :, None]) / 2
        lab[..., 3:5] /= 2
        return canvas, lab.view(b, 4 * m, 5), val.view(b, 4 * m)

    def _affine(self, src: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, mosaic: bool):
        """Random zoom, shift and horizontal flip of ``src`` [b,3,W,W] (0-255) into [b,3,S,S]; boxes follow.

        Output pixel ``u = f * (k * (x - c) + t) + S/2`` for source pixel ``x``: ``k`` zoom, ``c`` the source point
        that lands at the centre (the image centre, or a random point of the mosaic's middle half, which plays
        the role of Ultralytics' random mosaic centre), ``t`` the shift, ``f`` -1 for a flipped image. Boxes are
        clipped and filtered like Ultralytics' ``box_candidates`` (sides > 2 px, area > 10 %, aspect < 100).
        """
        b, w, s = len(src), src.shape[-1], self.data.imgsz
        k = 1 + (2 * self._rand(b) - 1) * self.scale
        t = (2 * self._rand(b, 2) - 1) * self.translate * s
        c = (0.5 + self._rand(b, 2)) * s if mosaic else torch.full((b, 2), w / 2, device=src.device)
        f = torch.where(self._rand(b) < self.fliplr, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=src.device)
        theta[:, 0, 0], theta[:, 1, 1] = f * s / (k * w), s / (k * w)
        theta[:, :, 2] = 2 * c / w - 1 - 2 * t / (k[:, None] * w)
        grid = F.affine_grid(theta, [b, 3, s, s], align_corners=False)
        img = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        img.masked_fill_((grid.abs() > 1).any(-1)[:, None], PAD)
        xyxy = torch.cat([labels[..., 1:3] - labels[..., 3:5] / 2, labels[..., 1:3] + labels[..., 3:5] / 2], -1) * w
        kk, cc, tt = k[:, None, None], c.repeat(1, 2)[:, None], t.repeat(1, 2)[:, None]
        new = (kk * (xyxy - cc) + tt + s / 2).clamp(0, s)
        flip = (f < 0)[:, None]
        x1, x2 = torch.where(flip, s - new[..., 2], new[..., 0]), torch.where(flip, s - new[..., 0], new[..., 2])
        wh_old = (xyxy[..., 2:] - xyxy[..., :2]) * kk
        wh = torch.stack([x2 - x1, new[..., 3] - new[..., 1]], -1)
        ar = torch.maximum(wh[..., 0] / (wh[..., 1] + 1e-16), wh[..., 1] / (wh[..., 0] + 1e-16))
        keep = valid & (wh > 2).all(-1) & (wh.prod(-1) / (wh_old.prod(-1) + 1e-16) > 0.1) & (ar < 100)
        centre = torch.stack([x1 + x2, new[..., 1] + new[..., 3]], -1) / (2 * s)
        return img, torch.cat([labels[..., :1], centre, wh / s], -1), keep

    def _colour(self, img: torch.Tensor) -> torch.Tensor:
        """0-255 -> 0-1 with HSV-style jitter as one colour matrix per image: hue and saturation in YIQ, value gain."""
        b, (hh, hs, hv) = len(img), self.hsv
        r = 2 * self._rand(b, 3) - 1
        angle, sat, val = r[:, 0] * hh * 2 * math.pi, 1 + r[:, 1] * hs, 1 + r[:, 2] * hv
        mix = torch.zeros(b, 3, 3, device=img.device)
        mix[:, 0, 0] = 1
        mix[:, 1, 1] = mix[:, 2, 2] = sat * torch.cos(angle)
        mix[:, 1, 2], mix[:, 2, 1] = -sat * torch.sin(angle), sat * torch.sin(angle)
        yiq, rgb = _YIQ.to(img.device, torch.float32), _RGB.to(img.device, torch.float32)
        matrix = (val / 255)[:, None, None] * (rgb @ mix @ yiq)
        return torch.bmm(matrix, img.flatten(2)).view_as(img).clamp_(0, 1)
