"""The twistd dropin: C{twistd -n dockserve --host tcp:2375}."""

from twisted.application.service import ServiceMaker

dockserve = ServiceMaker(
    "dockserve", "dockserve.tap", "Docker Engine API daemon.", "dockserve"
)
