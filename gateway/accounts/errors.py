"""What a registry operation refuses, with the contract's code and, for bad input, the field."""
from __future__ import annotations

from gateway.domain.errors import ClientCode


class RegistryError(Exception):
    """The message is safe to show: it never quotes a credential or a key."""

    def __init__(self, code: ClientCode, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def bad_input(field: str, message: str) -> RegistryError:
    return RegistryError(ClientCode.BAD_USER_INPUT, message, field)


def unavailable(what: str = "the account registry's database does not answer; retry later") -> RegistryError:
    return RegistryError(ClientCode.REGISTRY_UNAVAILABLE, what)
