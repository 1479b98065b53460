"""The worker runtime and the bundled-function catalog.

`shabari.runtime.worker` is the process that serves one warm pod of a function (the local
backend spawns it; function images run it as their entry point); `shabari.runtime.protocol`
is the frame format both ends speak; `shabari.runtime.catalog` finds the bundled functions.
This package stays light on purpose: importing it must not slow a worker's cold start.
"""
