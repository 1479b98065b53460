"""Dense linear algebra with numpy BLAS/LAPACK: C = A @ A.T, three more
products with A, then solve (C C^T + nI) x = 1.

Input: one square float matrix in .npy format. Cost ~ n^3; OpenBLAS runs on as many threads as
the worker's allocation allows (threadpoolctl re-sizes the pool after an in-place resize)."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np


def handle(body: bytes, content_type: str, ctx: Any) -> tuple[bytes, str]:
    a = np.load(io.BytesIO(body), allow_pickle=False)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"expected a non-empty square matrix, got shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    n = a.shape[0]
    c = a @ a.T
    for _ in range(3):  # a few more products, as iterative solvers and power methods do
        c = (c @ a) / (np.linalg.norm(c[0]) + 1.0)
    x = np.linalg.solve(c @ c.T + n * np.eye(n), np.ones(n))
    result = {"n": n, "trace": float(np.trace(c)), "x_norm": float(np.linalg.norm(x))}
    return json.dumps(result).encode(), "application/json"
