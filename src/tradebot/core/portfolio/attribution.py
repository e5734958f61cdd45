"""Books of one asset: the asset position, its streams' virtual units and their pending deltas.

Implements the per-stream attribution of STRATEGY.md §5 for :class:`~tradebot.core.portfolio.ledger.Ledger`
(see its module docstring for the rules). Every method runs inside
:data:`~tradebot.core.portfolio.book.LEDGER_CONTEXT`, set by the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from tradebot.core.domain import ZERO
from tradebot.core.portfolio.book import QUANTUM, PositionBook, allocate, sign, split

UNASSIGNED_SUFFIX = ":unassigned"


def unassigned_stream_id(asset: str) -> str:
    """Return the id of ``asset``'s bucket stream for fills no stream asked for, ``"<asset>:unassigned"``."""
    return f"{asset}{UNASSIGNED_SUFFIX}"


class AssetBooks:
    """Asset book, stream books (in allocation order, the bucket stream last) and pending deltas.

    Attributes
    ----------
    asset
        Base asset code, e.g. ``"BTC"``.
    bucket
        Id of the bucket stream, ``"<asset>:unassigned"``.
    book
        The asset's position.
    streams
        Stream id → the stream's virtual position; Σ units == ``book.qty``.
    pending
        Stream id → signed base units the stream still needs from the venue (non-zero entries only).
    """

    __slots__ = ("asset", "book", "bucket", "pending", "streams")

    def __init__(self, asset: str, stream_ids: Sequence[str]) -> None:
        self.asset = asset
        self.bucket = unassigned_stream_id(asset)
        self.book = PositionBook()
        self.streams = {sid: PositionBook() for sid in [*stream_ids, self.bucket]}
        self.pending: dict[str, Decimal] = {}

    def cross(self, target_units: Mapping[str, Decimal], mark: Decimal) -> Decimal:
        """Cross units between streams at ``mark``, store pending deltas, return their sum (base units).

        A stream not in ``target_units`` keeps its units; the bucket's default target is 0. Targets
        are quantized to 1e-18 (half-even). Sellers and buyers are matched pro rata to their deltas.
        """
        deltas: dict[str, Decimal] = {}
        for sid, book in self.streams.items():
            default = ZERO if sid == self.bucket else book.qty
            target = target_units.get(sid, default).quantize(QUANTUM, rounding=ROUND_HALF_EVEN)
            deltas[sid] = target - book.qty
        sellers = [(sid, -d) for sid, d in deltas.items() if d < 0]
        buyers = [(sid, d) for sid, d in deltas.items() if d > 0]
        crossed = min(sum((q for _, q in sellers), ZERO), sum((q for _, q in buyers), ZERO))
        for sid, q in allocate(crossed, sellers):
            self.streams[sid].trade(-q, mark)
            deltas[sid] += q
        for sid, q in allocate(crossed, buyers):
            self.streams[sid].trade(q, mark)
            deltas[sid] -= q
        self.pending = {sid: d for sid, d in deltas.items() if d}
        return sum(self.pending.values(), ZERO)

    def apply_fill(
        self, signed: Decimal, price: Decimal, fee: Decimal
    ) -> tuple[Decimal, Decimal, dict[str, Decimal]]:
        """Apply a fill of ``signed`` base units at ``price`` with ``fee`` (quote) to the asset and its streams.

        Returns
        -------
        tuple
            ``(realized_pnl, closed_qty, stream_qty)``: the asset's realized PnL and closed quantity,
            and the signed quantity allocated to each stream.
        """
        realized, closed_qty = self.book.trade(signed, price)
        self.book.fees += fee
        allocation = self._allocate(signed)
        fees = dict(split(fee, [(sid, abs(q)) for sid, q in allocation.items()]))
        for sid, q in allocation.items():
            book = self.streams[sid]
            book.trade(q, price)
            book.fees += fees.get(sid, ZERO)
        return realized, closed_qty, allocation

    def pay_fee_in_base(self, units: Decimal, price: Decimal, allocation: Mapping[str, Decimal]) -> Decimal:
        """Give up ``units`` of the asset as a fee (a venue charging commission in the base asset).

        The units leave the asset and, pro rata to ``allocation`` (the fill they were charged on), the
        streams that received that fill, as a sale at ``price`` with no further fee: its quote value
        was already booked as the fill's fee. Returns the realized PnL of that sale (quote currency).
        """
        realized, _closed = self.book.trade(-units, price)
        for sid, share in split(units, [(sid, abs(q)) for sid, q in allocation.items()]):
            self.streams[sid].trade(-share, price)
        return realized

    def stream_units_total(self) -> Decimal:
        """Σ stream units, base units (equals ``book.qty`` by invariant)."""
        return sum((b.qty for b in self.streams.values()), ZERO)

    def _allocate(self, signed: Decimal) -> dict[str, Decimal]:
        # Pending deltas of the fill's sign first, then opposite-sign holdings, then the bucket.
        s = sign(signed)
        rest = abs(signed)
        shares: dict[str, Decimal] = {}
        caps = [(sid, abs(d)) for sid, d in self.pending.items() if sign(d) == s]
        take = min(rest, sum((c for _, c in caps), ZERO))
        for sid, q in allocate(take, caps):
            shares[sid] = q
            left = self.pending[sid] - s * q
            if left:
                self.pending[sid] = left
            else:
                del self.pending[sid]
        rest -= take
        if rest:
            after = {sid: b.qty + s * shares.get(sid, ZERO) for sid, b in self.streams.items()}
            caps = [(sid, abs(u)) for sid, u in after.items() if sign(u) == -s]
            take = min(rest, sum((c for _, c in caps), ZERO))
            for sid, q in allocate(take, caps):
                shares[sid] = shares.get(sid, ZERO) + q
            rest -= take
        if rest:
            shares[self.bucket] = shares.get(self.bucket, ZERO) + rest
        return {sid: s * q for sid, q in shares.items()}

    def to_dict(self) -> dict[str, Any]:
        """Return the state as plain strings (for snapshots)."""
        return {
            "book": self.book.to_dict(),
            "streams": {sid: b.to_dict() for sid, b in self.streams.items()},
            "pending": {sid: str(d) for sid, d in self.pending.items()},
        }

    def load(self, data: Mapping[str, Any]) -> None:
        """Replace the state with :meth:`to_dict` ``data``."""
        self.book = PositionBook.from_dict(data["book"])
        self.streams = {sid: PositionBook.from_dict(b) for sid, b in data["streams"].items()}
        self.pending = {sid: Decimal(d) for sid, d in data["pending"].items()}
