# -*- test-case-name: tests.daemon.containers.test_mounts -*-
"""
Volume names: dockerd's charset for the local driver, and the 64-hex
names of anonymous volumes. A name is a directory under the volumes root,
so C{../x} must never become one.
"""

import json
import re
import secrets

from dockserve.errors import InvalidParameter

#: dockerd's rule for a local volume's name (two characters at least).
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def check_name(name: str) -> str:
    """
    C{name} if the local driver may have it, else dockerd's 400.

    @raise InvalidParameter: For C{../x}, C{a/b}, C{-x}...
    """
    if len(name) == 1:
        msg = (
            f"create {name}: volume name is too short, names should be at "
            "least two alphanumeric characters"
        )
        raise InvalidParameter(msg)
    if not _VOLUME_NAME.fullmatch(name):
        msg = (
            f"create {name}: {json.dumps(name, ensure_ascii=False)} includes "
            'invalid characters for a local volume name, only "[a-zA-Z0-9]'
            '[a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path"
        )
        raise InvalidParameter(msg)
    return name


def new_name() -> str:
    """A name for an anonymous volume: 64 hex digits, as dockerd's."""
    return secrets.token_hex(32)
