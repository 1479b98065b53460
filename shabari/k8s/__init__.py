"""The Kubernetes control plane (DESIGN 4.8): FunctionSizingPolicy CRs and SLO annotations.

Layout: `types` (TypedDict bodies), `annotations` and `reconcile` (pure decisions: what the
cluster should look like), `settings` (environment), `kube` and `gateway` (the only I/O),
`handlers` (kopf plumbing, started with `kopf run -m shabari.k8s.handlers`) and `cli`
(`shabari operator`).
"""
