"""HD keys of one wallet: BIP32 seed -> BIP84 receive chain m/84'/1'/0'/0/i, P2WPKH."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from embit import bech32, bip32, script
from embit.descriptor.checksum import add_checksum
from embit.networks import NETWORKS

REGTEST = NETWORKS["regtest"]
ACCOUNT_PATH = "84h/1h/0h"
SEED_BYTES = 32


@dataclass(frozen=True)
class DerivedAddress:
    """One receive address with everything the wallet stores about it."""

    index: int
    address: str
    script: bytes
    pubkey: bytes
    descriptor: str


def new_seed() -> bytes:
    """Return a fresh BIP32 seed from the OS CSPRNG."""
    return secrets.token_bytes(SEED_BYTES)


class KeyChain:
    """Derives the receive addresses of one seed; pure computation, no I/O.

    ``receive_descriptor`` is the ranged descriptor every receive address derives from
    (what bitcoind lists as ``parent_descs``).
    """

    def __init__(self, seed: bytes) -> None:
        root = bip32.HDKey.from_seed(seed, version=REGTEST["xprv"])
        self._fingerprint = root.my_fingerprint.hex()
        self._account = root.derive("m/" + ACCOUNT_PATH)
        xpub = self._account.to_public().to_base58(version=REGTEST["xpub"])
        self.receive_descriptor: str = add_checksum(
            f"wpkh([{self._fingerprint}/{ACCOUNT_PATH}]{xpub}/0/*)")

    def derive(self, index: int) -> DerivedAddress:
        """Return receive address ``index`` (m/84'/1'/0'/0/index)."""
        public_key = self._account.derive([0, index]).get_public_key()
        pubkey = public_key.sec()
        spk = script.p2wpkh(public_key)
        origin = f"[{self._fingerprint}/{ACCOUNT_PATH}/0/{index}]"
        return DerivedAddress(
            index=index,
            address=spk.address(REGTEST),
            script=spk.data,
            pubkey=pubkey,
            descriptor=add_checksum(f"wpkh({origin}{pubkey.hex()})"),
        )


def regtest_script(address: str) -> bytes | None:
    """Return the scriptPubKey of a regtest segwit address, or None if ``address`` is
    not a valid ``bcrt1…`` address."""
    version, program = bech32.decode(REGTEST["bech32"], address)
    if version is None or program is None:
        return None
    opcode = 0 if version == 0 else 0x50 + version
    return bytes([opcode, len(program)]) + bytes(program)
