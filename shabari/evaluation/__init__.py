"""Off-policy evaluation of the decision log (`shabari evaluate`).

The gateway logs, for every invocation, the input's features, the size it ran at, that size's
probability under the policy that chose it, and the cost (`shabari.core.cost`). That is
enough to estimate what *another* policy would have cost on the same traffic without running
it: inverse propensity scoring (IPS) and the doubly robust estimator (DR), each with a
confidence interval. `ope` is the pure math; `cli` reads the log and prints the table.
"""
