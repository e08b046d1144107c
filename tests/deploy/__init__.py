"""Tests of the deployment as shipped: the container image, the Helm chart and its
NetworkPolicies, and the forced path on a VM."""
