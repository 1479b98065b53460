"""Does the order of the demo's policies bias what it measures? Three pods, two policy orders.

The demo sends each invocation to its three policies back to back. Round 3 found shabari's
2-vCPU classify pods 1.07-1.31x slower than static-max's on the same input at the same size
(median over a run) and could not explain it (docs/demo.md). This bench isolates the replay's
order: three pods of one bundled function on the local backend (real workers under cgroup
limits), sized as the demo's policies size classify (`a`: 2 vCPU / 1 GiB like static-max,
`b`: 2 vCPU / 512 MiB like shabari, `c`: 500m / 512 MiB like static-default), the same seeded
inputs sent to all three in each of three orderings:

- `rotation`: the demo's old order, c b a / b a c / a c b in turn: b follows c and a
  follows b in two of every three;
- `mirrored`: the same rotation with a and b swapped: a follows c, b follows a;
- `williams`: the demo's order now (`shabari.demo.replay.balanced_orders`): each pod first and
  after each other pod equally often.

It prints the median of b's latency over a's per input (b and a differ only in memory
limit). If the order does not matter, all three are about 1.0 and `rotation` equals
`mirrored`. Prints numbers, asserts nothing.

    .venv/bin/python bench/replay_order.py [--function classify] [--jobs 120] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics

import featurizers
from shabari.backends.local import LocalBackend
from shabari.core import Size
from shabari.core.ids import NodeId, PodId
from shabari.demo.plan import PLAN_BY_NAME
from shabari.demo.replay import balanced_orders
from shabari.runtime.catalog import bundled_functions

PODS = {"a": Size(2000, 1024), "b": Size(2000, 512), "c": Size(500, 512)}
ROTATION = [["c", "b", "a"], ["b", "a", "c"], ["a", "c", "b"]]
ORDERINGS = {
    "rotation": ROTATION,
    "mirrored": [[{"a": "b", "b": "a"}.get(p, p) for p in row] for row in ROTATION],
    "williams": [[list(PODS)[k] for k in row] for row in balanced_orders(len(PODS))],
}


async def measure(function: str, jobs: int, seed: int) -> None:
    fn = bundled_functions()[function]
    spec, plan = fn.spec, PLAN_BY_NAME.get(function)
    xs = []
    for x in fn.generate_inputs(seed, 64):
        f = featurizers.extract(x.body, x.content_type, spec.featurizer, spec.featurizer_options)
        if plan is None or plan.in_range(f):
            xs.append(x)
    backend = LocalBackend({function: fn})
    await backend.start()
    try:
        for ordering, orders in ORDERINGS.items():
            for name, size in PODS.items():  # fresh pods per ordering
                await backend.start_pod(PodId(f"{ordering}-{name}"), spec, size, NodeId("local"))
            rnd = random.Random(seed)
            lat: dict[str, list[float]] = {name: [] for name in PODS}
            for i in range(jobs):
                x = xs[rnd.randrange(len(xs))]
                for name in orders[i % len(orders)]:
                    r = await backend.invoke(PodId(f"{ordering}-{name}"), x.body,
                                             x.content_type, 60.0)
                    lat[name].append(r.outcome.latency_ms)
            ratio = statistics.median(b / a for a, b in zip(lat["a"], lat["b"], strict=True))
            print(f"{ordering:>9}: b/a latency median {ratio:.3f} over {jobs} inputs "
                  f"(a p50 {statistics.median(lat['a']):.1f} ms, "
                  f"b p50 {statistics.median(lat['b']):.1f} ms)", flush=True)
            for name in PODS:
                await backend.stop_pod(PodId(f"{ordering}-{name}"))
    finally:
        await backend.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--function", default="classify")
    ap.add_argument("--jobs", type=int, default=120)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    asyncio.run(measure(a.function, a.jobs, a.seed))


if __name__ == "__main__":
    main()
