"""Adapters to the platforms that run invocations: local processes, Kubernetes, Knative, OpenWhisk.

Every backend implements `shabari.backends.base.Backend`; the gateway drives them identically.
"""
