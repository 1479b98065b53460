"""Image classification with a ResNet-style CNN in PyTorch (random weights, seeded: no weights
can be downloaded here, and the cost of inference does not depend on the weights' values).

The image is cut into 224x224 tiles that form one batch (as a detector's sliding window does), so
cost grows with resolution x batch. Convolutions run on torch's intra-op pool, sized from the CPU
allocation by the worker; on a machine with CUDA the model runs on the GPU (GPU-capable).
Building the model and one warm-up pass happen in `init`: that is this function's model load,
part of its cold start."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

Image.MAX_IMAGE_PIXELS = 64_000_000
TILE = 224
MAX_TILES = 64
_model: nn.Module | None = None
_device = "cpu"


def _block(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


def build_model(num_classes: int = 1000) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 7, 2, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
        _block(32, 32, 1), _block(32, 64, 2), _block(64, 128, 2), _block(128, 256, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, num_classes),
    ).eval()


def init(ctx: Any) -> None:
    global _model, _device
    _device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx.device = _device
    _model = build_model().to(_device)
    with torch.inference_mode():
        _model(torch.zeros(1, 3, TILE, TILE, device=_device))


def _tiles(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    h, w, _ = arr.shape
    ph, pw = -h % TILE, -w % TILE
    arr = np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
    t = torch.from_numpy(arr).permute(2, 0, 1)  # C,H,W
    t = t.unfold(1, TILE, TILE).unfold(2, TILE, TILE)  # C,nh,nw,T,T
    t = t.permute(1, 2, 0, 3, 4).reshape(-1, 3, TILE, TILE)
    return t[:MAX_TILES]


def handle(body: bytes, content_type: str, ctx: Any) -> tuple[bytes, str]:
    assert _model is not None, "init() was not called"
    torch.set_num_threads(ctx.threads)
    with Image.open(io.BytesIO(body)) as img:
        batch = _tiles(img)
    with torch.inference_mode():
        logits = _model(batch.to(_device))
        top = logits.softmax(dim=1).max(dim=1)
    result = {
        "tiles": int(batch.shape[0]),
        "classes": top.indices.tolist(),
        "confidence": [round(float(c), 4) for c in top.values],
        "device": _device,
    }
    return json.dumps(result).encode(), "application/json"
