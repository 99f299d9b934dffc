"""Settings of the live retention loop (``CHURN_RETENTION__…``; docs/retention.md).

``churnpulse retention`` joins outcomes from the topics, learns the offer recommender and the
learning policy's counts, and publishes them to Redis; the alerter attaches the top offers
(``offers``, on by default: nothing changes until a retention process has published) and, with
``bandit`` on (off by default), lets the learning policy choose the action.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from alerts.bandit import BanditParams


class RetentionSettings(BaseModel):
    """The retention process and what the alerter takes from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    offers: bool = Field(True, description="The alerter attaches the top offers once a "
                                           "retention process has published a recommender.")
    offers_k: int = Field(3, ge=1, le=20, description="Offers per alert.")
    bandit: bool = Field(False, description="The learning policy chooses among the routing "
                                            "row's allowed actions (off: the static table).")
    explore: float = Field(0.1, ge=0.0, le=1.0, description="Largest share of decisions that "
                                                            "are exploration draws.")
    min_pulls: int = Field(30, ge=0, description="Outcomes an alternative needs in a context "
                                                 "before it can replace the table's action.")
    salt: str = Field("", description="Salt of the per-episode random numbers.")
    context: tuple[str, ...] = Field(("segment", "driver_category"),
                                     description="Alert fields that make the policy's context.")
    horizon_days: float | None = Field(None, gt=0, description="Outcome horizon (default: "
                                                               "model.horizon_days).")
    offers_topic: str | None = Field(None, description="Topic of the offer events (default: "
                                                       "topics.events).")
    keep_days: float | None = Field(None, gt=0, description="How long labels, accepted offers "
                                                           "and resolved ids are kept for late "
                                                           "actions (default: 2 horizons).")
    outcomes_topic: str = Field("retention-outcomes", description="Where outcomes go.")
    checkpoint_s: float = Field(2.0, gt=0, description="Longest time between checkpoints "
                                                       "(state, offsets, outbox) of the process.")
    reco_checkpoint_s: float = Field(30.0, gt=0, description="Longest time between "
                                                             "checkpoints of the recommender "
                                                             "(its pickle is the large part).")
    poll_s: float = Field(5.0, gt=0, description="How often the alerter looks for newer "
                                                 "published state.")
    batch_size: int = Field(5000, ge=1)

    def bandit_params(self) -> BanditParams:
        return BanditParams(explore=self.explore, min_pulls=self.min_pulls, salt=self.salt,
                            context=self.context)
