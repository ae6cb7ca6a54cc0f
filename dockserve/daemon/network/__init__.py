# -*- test-case-name: tests.daemon.test_network -*-
"""
Container networking: the networks (L{service}, L{records}, L{ipam}) and
the plumbing of containers on them (L{attach} over L{netns}, L{cni},
L{firewall}, L{ports} and L{dns}, put together by L{plumbing}).
"""


def mode_network(network_mode: str | None) -> str:
    """The network a C{HostConfig.NetworkMode} joins (C{default} is bridge)."""
    if not network_mode or network_mode == "default":
        return "bridge"
    return network_mode
