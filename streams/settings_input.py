"""Settings section ``input``: bounds on every consumed event and label (issue 12).

Environment names: ``CHURN_INPUT__MAX_FUTURE_S``, ``CHURN_INPUT__MIN_TS``, ... Records outside
the bounds go to the dead-letter topic with the reason codes of :mod:`streams.contracts`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streams.contracts import InputLimits


class InputSettings(BaseModel):
    """What an input record may carry before it can move a watermark, a feature or a model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_future_s: float = Field(
        3600.0, ge=0,
        description="Event time may be at most this far after the wall clock (clock skew).")
    min_ts: float = Field(
        946_684_800.0, description="Event time before this (epoch seconds; 2000-01-01) is refused.")
    max_abs_value: float = Field(1e12, gt=0, description="Largest |value| of an event.")
    max_properties_bytes: int = Field(4096, ge=2, description="Largest properties, as JSON.")
    max_properties_depth: int = Field(8, ge=1, description="Deepest nesting of properties.")
    max_record_bytes: int = Field(65536, ge=256, description="Largest record value.")

    @property
    def limits(self) -> InputLimits:
        """The decoder's :class:`~streams.contracts.InputLimits` (wall clock: ``time.time``)."""
        return InputLimits(max_future_s=self.max_future_s, min_ts=self.min_ts,
                           max_abs_value=self.max_abs_value,
                           max_properties_bytes=self.max_properties_bytes,
                           max_properties_depth=self.max_properties_depth,
                           max_record_bytes=self.max_record_bytes)
