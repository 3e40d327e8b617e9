"""Settings of the presence engine (the seed's parameters and a few more)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pua.sip.timers import TimerConfig

__all__ = ["EngineConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """The seed's parameters with their defaults, and the engine's own."""

    hash_size: int = 9
    """2^hash_size partitions of the records table (the seed's hash_size)."""
    min_expires: int = 0
    """Lower limit of Expires for PUBLISH and SUBSCRIBE (0: none)."""
    default_expires: int = 3600
    """Expires used when the caller gives -1 ("for ever")."""
    outbound_proxy: str | None = None
    """Next hop for every request that names none itself."""
    refresh_margin: float = 32.0
    """Refresh at least this long before expiry: a UDP transaction can take
    64*T1 = 32 s to fail, and the refresh must still land in time."""
    max_in_flight: int = 1000
    """Most requests waiting for their answer at once before records whose
    refresh or retry falls due wait too (0: no limit).  A server that slows
    down then has this many transactions retransmitting at it, not one per
    record: unbounded, their retransmissions (up to ten each over timer F)
    take the CPU and the socket buffers that the answers need, and fewer
    answers make more retransmissions.  Requests the API asks for are not
    held (the API has its own limit)."""
    retry_base: float = 2.0
    """First retry delay after a failure (doubles, with jitter)."""
    retry_cap: float = 300.0
    """Longest retry delay."""
    retry_after_cap: float = 3600.0
    """Longest Retry-After honoured (a larger one is cut to this)."""
    user_agent: str | None = "pua"
    """User-Agent header of our requests (None: none)."""
    timers: TimerConfig = field(default_factory=TimerConfig)
    """RFC 3261 T1, T2, T4."""

    def __post_init__(self) -> None:
        if not 1 <= self.hash_size <= 20:
            raise ValueError(f"hash_size must be between 1 and 20, not {self.hash_size}")
        if self.min_expires < 0:
            raise ValueError(f"min_expires must be >= 0, not {self.min_expires}")
        if self.default_expires <= 0:
            raise ValueError(f"default_expires must be > 0, not {self.default_expires}")
        if self.max_in_flight < 0:
            raise ValueError(f"max_in_flight must be >= 0, not {self.max_in_flight}")
        if not 0 < self.retry_base <= self.retry_cap:
            raise ValueError("retry_base must be > 0 and <= retry_cap")
