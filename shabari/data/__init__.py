"""Data the simulator and the gateway read: traces, performance tables, their converters.

`perf` loads and writes performance tables (DESIGN 4.4); `traces` loads Azure 2019/2021 and
the project's invocation CSV; `vswarm` converts the vSwarm profile into a performance table;
`synth` generates the bundled traces from published statistics.
"""
