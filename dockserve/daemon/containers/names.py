# -*- test-case-name: tests.daemon.containers.test_names -*-
"""
Docker's rules for container names and IDs.

A user names a container by its full ID, its name (with or without the
leading slash) or any unique prefix of its ID, in that order of precedence,
as moby's C{daemon.GetContainer} does; the error texts are dockerd's, since
scripts match on them.
"""

import re
import secrets
from collections.abc import Callable, Iterable, Mapping

from dockserve.errors import Conflict, InvalidParameter, NotFound, SystemError_

#: dockerd's C{RestrictedNameChars}; the first character is stricter.
_VALID_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

# A short list in the spirit of moby's namesgenerator: the names only have to
# be unique and pronounceable.
_LEFT = (
    "admiring", "affectionate", "amazing", "awesome", "blissful", "bold",
    "brave", "charming", "clever", "compassionate", "competent", "confident",
    "cool", "dazzling", "determined", "eager", "ecstatic", "elegant",
    "epic", "festive", "focused", "friendly", "funny", "gallant", "gifted",
    "happy", "hopeful", "inspiring", "jolly", "keen", "kind", "laughing",
    "loving", "lucid", "magical", "modest", "nice", "nifty", "optimistic",
    "peaceful", "practical", "quirky", "relaxed", "serene", "sharp", "stoic",
    "sweet", "tender", "trusting", "upbeat", "vibrant", "wizardly", "zealous",
)  # fmt: skip
_RIGHT = (
    "albattani", "babbage", "bardeen", "bell", "bohr", "cannon", "curie",
    "darwin", "dijkstra", "einstein", "euclid", "euler", "fermat", "feynman",
    "galileo", "gauss", "goldberg", "hamilton", "hawking", "hopper", "hypatia",
    "jennings", "kepler", "knuth", "lamarr", "lovelace", "maxwell", "mccarthy",
    "meitner", "newton", "noether", "pascal", "pike", "ritchie", "shannon",
    "thompson", "tesla", "torvalds", "turing", "wilson", "wozniak", "yonath",
)  # fmt: skip


def validate(name: str) -> str:
    """
    Check a user-given name and return it with Docker's leading slash.

    @raise InvalidParameter: C{Invalid container name (NAME), only
        [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed}, dockerd's 400.
    """
    if not _VALID_NAME.match(name):
        raise InvalidParameter(
            f"Invalid container name ({name}), only "
            "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return "/" + name.lstrip("/")


def name_conflict(name: str, owner: str) -> Conflict:
    """Dockerd's 409 for a C{name} (with its slash) that C{owner} holds."""
    return Conflict(
        f'Conflict. The container name "{name}" is already in use by container '
        f'"{owner}". You have to remove (or rename) that container to be able '
        "to reuse that name."
    )


def new_id(taken: Callable[[str], bool] = lambda _: False) -> str:
    """
    A fresh 64-hex container ID.

    Like moby's C{stringid.GenerateRandomID}, an ID whose 12-character short
    form is all digits is drawn again, so the short form never parses as a
    number; so is one C{taken} says is in use.
    """
    while True:
        candidate = secrets.token_hex(32)
        if candidate[:12].isdigit() or taken(candidate):
            continue
        return candidate


def is_full_id(text: str) -> bool:
    """Whether C{text} is a whole container ID (64 lower-case hex digits)."""
    return len(text) == 64 and all(ch in "0123456789abcdef" for ch in text)


def random_name(taken: Callable[[str], bool]) -> str:
    """
    A generated C{/adjective_surname} name that is not C{taken}; a digit is
    appended after a collision, as moby's generator does on retries.
    """
    for attempt in range(100):
        name = f"/{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
        if attempt:
            name += str(secrets.randbelow(10))
        if not taken(name):
            return name
    return "/" + new_id()[:12]


def lookup(reference: str, ids: Iterable[str], names: Mapping[str, str]) -> str:
    """
    The ID of the container a user means by C{reference}.

    @param ids: Every container ID.
    @param names: Name (with its slash) to ID.
    @raise NotFound: C{No such container: REF}.
    @raise SystemError_: For a prefix that more than one ID starts with: the
        500 dockerd answers (its truncindex error, passed on as a system error).
    """
    all_ids = list(ids)
    if reference in all_ids:
        return reference
    by_name = names.get("/" + reference.lstrip("/"))
    if by_name is not None:
        return by_name
    if reference and re.fullmatch("[0-9a-f]+", reference):
        found = [i for i in all_ids if i.startswith(reference)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise SystemError_(f"Multiple IDs found with provided prefix: {reference}")
    raise NotFound(f"No such container: {reference}")
