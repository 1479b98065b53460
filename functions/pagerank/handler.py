"""Graph analytics with networkx: build the graph from an edge list, BFS levels from node 0,
connected components, then PageRank by power iteration over the edge arrays (numpy).

Input: text, one `u v` edge per line. Cost ~ nodes + edges (graph construction and BFS are
pure Python, single-threaded; memory grows with the graph)."""

from __future__ import annotations

import json
from typing import Any

import networkx as nx
import numpy as np


def _pagerank(g: nx.Graph, damping: float = 0.85, tol: float = 1e-8) -> np.ndarray:
    idx = {v: i for i, v in enumerate(g)}
    n = len(idx)
    edges = np.array([(idx[u], idx[v]) for u, v in g.edges()], dtype=np.int64).reshape(-1, 2)
    src = np.concatenate([edges[:, 0], edges[:, 1]])  # undirected: both directions
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    outdeg = np.bincount(src, minlength=n).astype(np.float64)
    rank = np.full(n, 1.0 / n)
    for _ in range(100):
        share = np.where(outdeg > 0, rank / np.maximum(outdeg, 1), 0.0)
        dangling = rank[outdeg == 0].sum()
        new = (1 - damping) / n + damping * (np.bincount(dst, weights=share[src], minlength=n)
                                             + dangling / n)
        if np.abs(new - rank).sum() < tol * n:
            return new
        rank = new
    return rank


def handle(body: bytes, content_type: str, ctx: Any) -> tuple[bytes, str]:
    text = body.decode("utf-8")
    g = nx.parse_edgelist(text.splitlines(), nodetype=int, data=False)
    if g.number_of_nodes() == 0:
        raise ValueError("empty graph: expected lines of 'u v'")
    root = 0 if 0 in g else next(iter(g))
    levels = nx.single_source_shortest_path_length(g, root)
    components = nx.number_connected_components(g)
    rank = _pagerank(g)
    nodes = list(g)
    top = np.argsort(rank)[::-1][:10]
    result = {
        "nodes": g.number_of_nodes(),
        "edges": g.number_of_edges(),
        "components": components,
        "bfs_depth": max(levels.values()),
        "top": [[int(nodes[i]), round(float(rank[i]), 6)] for i in top],
    }
    return json.dumps(result).encode(), "application/json"
