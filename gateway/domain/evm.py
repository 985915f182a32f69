"""EVM address handling: compare case-insensitively, emit EIP-55 checksummed."""
from __future__ import annotations

import functools
import re

from Crypto.Hash import keccak

_HEX_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def is_evm_address(text: str) -> bool:
    return bool(_HEX_ADDRESS.match(text))


@functools.lru_cache(maxsize=65_536)
def checksum(address: str) -> str:
    """EIP-55 mixed-case form of a 20-byte hex address."""
    if not is_evm_address(address):
        raise ValueError("not an EVM address")
    lower = address[2:].lower()
    digest = keccak.new(digest_bits=256, data=lower.encode("ascii")).hexdigest()
    return "0x" + "".join(c.upper() if int(digest[i], 16) >= 8 else c for i, c in enumerate(lower))


def normalize_address(address: str) -> str:
    """Checksum EVM addresses; leave anything else (base58, bech32) exactly as given."""
    return checksum(address) if is_evm_address(address) else address
