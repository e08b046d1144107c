"""Policy as code, beside the gateway rather than in it: test cases for a policy, explanations of
its decisions, and simulations of a new policy over the requests the audit recorded. Used by
``ztgate policy``; nothing here serves a request.
"""
