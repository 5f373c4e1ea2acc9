"""Which status a finding may move to from which, by hand (app or API).

Scan imports also move findings on their own: an active finding the tool no longer
reports becomes Resolved, a Resolved finding it reports again becomes Re-opened.
"""

from projects.models import FindingStatus as S

# Statuses that mean "still to be dealt with": a scan that no longer reports them
# resolves them. False positive and Accepted risk are decisions people made and are
# left alone.
ACTIVE_STATUSES = frozenset({S.OPEN, S.CONFIRMED, S.REOPENED})

ALLOWED_TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.OPEN: (S.CONFIRMED, S.FALSE_POSITIVE, S.ACCEPTED_RISK, S.RESOLVED),
    S.CONFIRMED: (S.OPEN, S.FALSE_POSITIVE, S.ACCEPTED_RISK, S.RESOLVED),
    S.REOPENED: (S.CONFIRMED, S.FALSE_POSITIVE, S.ACCEPTED_RISK, S.RESOLVED),
    S.FALSE_POSITIVE: (S.OPEN, S.CONFIRMED),
    S.ACCEPTED_RISK: (S.OPEN, S.CONFIRMED),
    S.RESOLVED: (S.REOPENED,),
}


def next_statuses(status: str) -> tuple[str, ...]:
    """The statuses a finding in `status` may be moved to by a person."""
    return ALLOWED_TRANSITIONS.get(status, ())
