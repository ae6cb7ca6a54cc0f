"""
The policy front door: who may call which route with which body, decided
before any handler runs, and recorded.

L{dockserve.api.policy.file} reads the TOML policy file,
L{dockserve.api.policy.peer} says who is on the other end of a connection
(listener, TLS client certificate, unix peer's uid), and
L{dockserve.api.policy.door.FrontDoor} is the check the middleware runs on
every routed request: route rules, request-body rules, owner scoping, rate
limits, learning mode, the audit log. docs/policy.md is the user's guide.
"""
