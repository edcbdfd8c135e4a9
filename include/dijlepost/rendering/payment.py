"""What a letter that asks for money carries so the bank transfer matches itself: the Belgian
structured communication (OGM/VCS) and the EPC QR code that banking apps scan.

The EPC QR code follows EPC069-12 ("Quick Response Code: Guidelines to Enable Data Capture for the
Initiation of a SEPA Credit Transfer"), version 002 (BIC optional within the EEA), character set 1
(UTF-8). Belgian banking apps read the 12 digits of a structured communication from the structured
remittance field and fill in the +++ddd/dddd/ddddd+++ communication.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, lru_cache
from itertools import chain, zip_longest
from typing import Any

import numpy as np
from segno import consts, encoder
from stdnum.be import ogm_vcs

from .errors import LetterDataError

EPC_MAX_BYTES = 331  # EPC069-12: the whole payload
EPC_MAX_VERSION = 13  # EPC069-12: largest QR code version a scanner must read
EPC_MAX_NAME = 70
EPC_MIN_AMOUNT = Decimal("0.01")
EPC_MAX_AMOUNT = Decimal("999999999.99")
QR_MASK = 6


def make_ogm(number: int) -> str:
    """The 12-digit structured communication for a 10-digit base number (check digits = base mod 97,
    97 when that is 0)."""
    if not 0 < number < 10**10:
        raise ValueError("the base of a structured communication is 1 to 10 digits")
    base = f"{number:010d}"
    return base + ogm_vcs.calc_check_digits(base)


def epc_payload(*, name: str, iban: str, amount: Decimal, reference: str, bic: str | None = None) -> str:
    """The EPC069-12 payload: one element per line, empty lines for absent optional elements, nothing
    after the last element used (the structured reference)."""
    if not isinstance(amount, Decimal) or not EPC_MIN_AMOUNT <= amount <= EPC_MAX_AMOUNT:
        raise LetterDataError(f"the amount to pay must be between {EPC_MIN_AMOUNT} and {EPC_MAX_AMOUNT} EUR")
    if not 0 < len(name) <= EPC_MAX_NAME:
        raise LetterDataError(f"the beneficiary name must be 1 to {EPC_MAX_NAME} characters")
    lines = [
        "BCD",  # service tag
        "002",  # version
        "1",  # character set: UTF-8
        "SCT",  # SEPA credit transfer
        bic or "",
        name,
        iban.replace(" ", ""),
        f"EUR{amount:.2f}",
        "",  # purpose code: none
        reference,  # structured remittance information
    ]
    payload = "\n".join(lines)
    if len(payload.encode("utf-8")) > EPC_MAX_BYTES:
        raise LetterDataError(f"the EPC QR payload is longer than {EPC_MAX_BYTES} bytes")
    return payload


def epc_qr_version(payload: str) -> int:
    """The version of the QR code `epc_qr_matrix` builds for the payload, found the way segno finds it
    (the smallest version whose capacity at level M holds the encoded payload) without building the
    code: validating a letter needs only this, and building the matrix is most of a letter's checking
    time. A test holds it equal to the built code's version over many payloads."""
    return _encoded(payload)[1]


@lru_cache(maxsize=16)
def _encoded(payload: str) -> tuple[Any, int]:
    """segno's data segments of the payload and the version they need: found when the layout checks the
    code, used again when it is drawn."""
    data = payload.encode("utf-8")
    if encoder.find_mode(data) == consts.MODE_BYTE:  # as every EPC payload is (it has line breaks)
        # What segno's `make_segment` builds for bytes in byte mode, with the bits unpacked by numpy
        # instead of eight generator steps per byte.
        segments = encoder.Segments()
        bits = bytearray(np.unpackbits(np.frombuffer(data, dtype=np.uint8)).tobytes())
        segments.add_segment(
            encoder._Segment(bits, len(data), consts.MODE_BYTE, consts.DEFAULT_BYTE_ENCODING)
        )
    else:
        segments = encoder.prepare_data(data, None, None)
    return segments, int(encoder.find_version(segments, consts.ERROR_LEVEL_M, eci=False, micro=False))


def check_epc_qr_fits(payload: str, version: int | None = None) -> None:
    """Raise `LetterDataError` if the payload's QR code is larger than a scanner must read."""
    version = epc_qr_version(payload) if version is None else version
    if version > EPC_MAX_VERSION:
        raise LetterDataError(f"the EPC QR code needs version {version}, above the maximum {EPC_MAX_VERSION}")


def epc_qr_matrix(payload: str) -> tuple[tuple[bool, ...], ...]:
    """The QR code's modules (True = dark), without quiet zone; error correction level M as EPC069-12
    requires (not boosted, which would change the level).

    The data mask is fixed (ISO/IEC 18004 allows any of the eight; the reader takes it from the format
    information) instead of segno scoring all eight, which was 80% of the encoding time. Mask 6 is the
    one segno's own scoring chose for 56% of 400 random payloads to the city's account (mask 4 for
    most others); tests decode the rendered codes."""
    return tuple(tuple(row) for row in (epc_qr_modules(payload) != 0).tolist())


def epc_qr_modules(payload: str) -> np.ndarray:
    """The modules of `epc_qr_matrix` as a uint8 array (0 = light), as drawing reads them.

    What `segno.make_qr(..., mask=QR_MASK)` builds, module for module (a test holds them equal over
    every version up to the EPC maximum), in a fraction of the time: segno encodes the data
    (`_message_bits`), and the bits are then placed with `_QrPlacement`."""
    segments, version = _encoded(payload)
    check_epc_qr_fits(payload, version)
    bits = _message_bits(segments, version)
    placement = _placement(version)
    if not 0 <= len(placement.rows) - len(bits) < 8:  # pragma: no cover - at most 7 remainder bits
        raise ValueError(f"a version {version} QR code has no room for a message of {len(bits)} bits")
    return placement.code(bits)


def _message_bits(segments, version: int) -> bytes:
    """The final message of a QR code at level M as segno's encoder builds it (ISO/IEC 18004 7.4-7.6:
    data, terminator, padding, then the data and error correction codewords of every block interleaved),
    one 0/1 byte per bit, without the remainder bits. segno writes the data bits; the error correction
    and the interleaving are `_MessagePlan`'s, and the bit-to-codeword conversions around them, which
    segno does through strings and generators, are numpy's packbits and unpackbits."""
    error = consts.ERROR_LEVEL_M
    buffer = encoder.Buffer()
    for segment in segments:
        encoder.write_segment(buffer, segment, None, encoder.version_range(version), False)
    tables: Any = consts  # segno declares its tables as plain objects
    capacity = tables.SYMBOL_CAPACITY[version][error]
    encoder.write_terminator(buffer, capacity, None, len(buffer))
    encoder.write_padding_bits(buffer, version, len(buffer))
    encoder.write_pad_codewords(buffer, version, capacity, len(buffer))
    codewords = np.packbits(np.frombuffer(buffer.getbits(), dtype=np.uint8))
    return np.unpackbits(_message_plan(version).message(codewords)).tobytes()


@dataclass(frozen=True)
class _BlockGroup:
    """Blocks of one size in a QR code's message, and their error correction as a table: the
    Reed-Solomon remainder is linear (addition in GF(256) is XOR), so a block's error correction
    codewords are the XOR of what each data codeword contributes at its place, `table[place, value]`."""

    start: int  # the group's first data codeword
    blocks: int
    data: int  # data codewords per block
    table: np.ndarray  # uint8 (data, 256, error codewords per block)

    def error_codewords(self, codewords: np.ndarray) -> np.ndarray:
        """The group's error correction codewords, block after block."""
        data = codewords[self.start : self.start + self.blocks * self.data].reshape(self.blocks, self.data)
        contributions = self.table[np.arange(self.data), data]  # (blocks, data, error codewords)
        return np.bitwise_xor.reduce(contributions, axis=1).ravel()


@dataclass(frozen=True)
class _MessagePlan:
    """How one QR code version at level M turns its data codewords into its message: the error
    correction of each block group, then the order in which data and error codewords interleave."""

    groups: tuple[_BlockGroup, ...]
    data: int  # data codewords (the buffer may hold a few bits more, which segno's blocks leave out)
    order: np.ndarray  # message position -> index into data codewords + error codewords

    def message(self, codewords: np.ndarray) -> np.ndarray:
        errors = [group.error_codewords(codewords) for group in self.groups]
        return np.concatenate([codewords[: self.data], *errors])[self.order]


@cache
def _message_plan(version: int) -> _MessagePlan:
    """Built once per version from segno's block table and its own `make_blocks`: what a data codeword
    of value 1 at each place contributes, scaled to every value by GF(256) multiplication."""
    tables: Any = consts
    log = np.array(tables.GALIOS_LOG, dtype=np.intp)
    exp = np.array(tables.GALIOS_EXP, dtype=np.uint8)
    product = exp[(log[:, None] + log[None, :]) % 255]  # GF(256) a * b for a, b > 0
    product[0, :] = product[:, 0] = 0
    groups, data_blocks, error_blocks = [], [], []
    start = error_start = 0
    for ec_info in tables.ECC[version][consts.ERROR_LEVEL_M]:
        units = _Codewords(np.eye(ec_info.num_data, dtype=np.uint8).tobytes())
        _, unit_errors = encoder.make_blocks([ec_info._replace(num_blocks=ec_info.num_data)], units)
        unit_table = np.array([list(block) for block in unit_errors], dtype=np.uint8)  # (data, error)
        table = np.ascontiguousarray(product[:, unit_table].transpose(1, 0, 2))  # (data, 256, error)
        groups.append(_BlockGroup(start, ec_info.num_blocks, ec_info.num_data, table))
        errors = ec_info.num_total - ec_info.num_data
        for block in range(ec_info.num_blocks):
            data_blocks.append(
                range(start + block * ec_info.num_data, start + (block + 1) * ec_info.num_data)
            )
            error_blocks.append(range(error_start + block * errors, error_start + (block + 1) * errors))
        start += ec_info.num_blocks * ec_info.num_data
        error_start += ec_info.num_blocks * errors
    error_blocks = [range(start + block.start, start + block.stop) for block in error_blocks]
    order = [
        index
        for blocks in (data_blocks, error_blocks)
        for index in chain.from_iterable(zip_longest(*blocks))
        if index is not None
    ]
    return _MessagePlan(groups=tuple(groups), data=start, order=np.array(order, dtype=np.intp))


class _Codewords(bytes):
    """Codewords as segno's `make_blocks` reads them from its bit buffer."""

    def toints(self) -> Iterator[int]:
        return iter(self)


@dataclass(frozen=True)
class _QrPlacement:
    """Where a QR code of one version puts each bit of its message, and what the code is when every bit
    is 0 (finder, timing and alignment patterns, the data region under mask QR_MASK, the format and
    version information). Placing the message is an XOR of that blank code at the bits that are 1: the
    mask is itself an XOR, so it applies to the blank code once for every letter."""

    blank: np.ndarray  # uint8, one row per module row
    rows: np.ndarray  # the module row of the message's k-th bit
    cols: np.ndarray  # its module column

    def code(self, bits: bytes) -> np.ndarray:
        """The code of a message (without remainder bits: they are 0, as the blank code has them)."""
        modules = self.blank.copy()
        ones = np.frombuffer(bits, dtype=np.uint8).astype(bool)
        modules[self.rows[: len(ones)][ones], self.cols[: len(ones)][ones]] ^= 1
        return modules


@cache
def _placement(version: int) -> _QrPlacement:
    """Built with segno's own placement, masking and format functions, once per version."""
    size = encoder.calc_matrix_size(version)
    matrix = encoder.make_matrix(size, size)
    encoder.add_finder_patterns(matrix, size, size)
    encoder.add_alignment_patterns(matrix, size, size)
    free = sum(row.count(0x2) for row in matrix)  # the data region's modules, still unset
    # segno's placement writes each bit where it belongs: with bit k written as k + 3 (never a value a
    # module has), every data module says which bit it holds.
    numbered = [list(row) for row in matrix]
    encoder.add_codewords(numbered, list(range(3, 3 + free)), version)
    where = sorted(
        (value, i, j) for i, row in enumerate(numbered) for j, value in enumerate(row) if value >= 3
    )
    blank = [bytearray(row) for row in matrix]
    encoder.add_codewords(blank, bytearray(free), version)
    _, blank = encoder.find_and_apply_best_mask(blank, size, size, QR_MASK)
    encoder.add_format_info(blank, version, consts.ERROR_LEVEL_M, QR_MASK)
    encoder.add_version_info(blank, version)
    return _QrPlacement(
        blank=np.array([list(row) for row in blank], dtype=np.uint8),
        rows=np.array([i for _, i, _ in where], dtype=np.intp),
        cols=np.array([j for _, _, j in where], dtype=np.intp),
    )
