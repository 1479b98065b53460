"""The data plane: an aiohttp gateway that right-sizes every invocation after its input arrives.

`service.Gateway` assembles the gateway and owns its lifecycle; `invocation` runs the invocation
path (featurize, decide, place, execute, learn) over the same policy and scheduler objects the
simulator drives, `pool` keeps pod state in step (scheduler, ledger, backend), `accounting`,
`checkpoints`, `sweeper` and `replies` are the other jobs; `app.make_app` puts it behind HTTP
(DESIGN 4.3); `cli.build_gateway` assembles it from a functions config; `admission`,
`metrics`, `decisionlog` and `slo` are its load shedding, Prometheus metrics, JSON-lines
decision log and per-invocation SLO resolution.
"""
