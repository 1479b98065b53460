"""The replay's policy orders: balanced for what runs just before each policy (a Williams
design), so no policy gains from following a particular other one."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from shabari.demo.replay import balanced_orders


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7])
def test_every_order_is_a_permutation(n: int) -> None:
    orders = balanced_orders(n)
    assert len(orders) == (n if n % 2 == 0 or n == 1 else 2 * n)
    for row in orders:
        assert sorted(row) == list(range(n))


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_each_policy_comes_first_equally_often(n: int) -> None:
    firsts = Counter(row[0] for row in balanced_orders(n))
    assert set(firsts) == set(range(n))
    assert len(set(firsts.values())) == 1


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_each_policy_follows_every_other_equally_often(n: int) -> None:
    pairs = Counter((a, b) for row in balanced_orders(n) for a, b in pairwise(row))
    assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert len(set(pairs.values())) == 1


def test_a_plain_rotation_would_not_be_balanced() -> None:
    """What the design replaces: rotating (a, b, c) puts b right after a in two of three
    orders and never a right after b."""
    rotation = [[(k + r) % 3 for k in range(3)] for r in range(3)]
    pairs = Counter((a, b) for row in rotation for a, b in pairwise(row))
    assert pairs[(0, 1)] == 2 and pairs[(1, 0)] == 0
