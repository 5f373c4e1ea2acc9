"""Per-mailbox pacing: stay under what Microsoft lets one mailbox send, all workers
together, and slow down further when Microsoft says so anyway.

The limits are the providers' declarations (`integrations.providers.limits`):
Exchange Online accepts 30 messages a minute from one mailbox by SMTP ("451 4.3.2"
beyond it); Microsoft Graph 10,000 requests per 10 minutes and 4 at a time per app
and mailbox (429 ApplicationThrottled or MailboxConcurrency, with Retry-After). A
tool's own "Messages per minute" replaces the message budget, and
NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE does for the tools without one (0: no pacing).

Each (tool, sender mailbox) is one token bucket. It holds a twentieth of the budget
(`capacity`, the largest burst) and refills at `rate` = (budget - capacity) per
window: no window of the budget's length ever sees more than the budget (one message
to spare, for submissions that reach the server a little late), and a backlog goes
out at 95% of it.
Each message takes a token and an in-flight slot; at most the tool's concurrency
slots are held at once, and each lapses after `hold` seconds, so the slots of a
worker killed mid-send free themselves. When Microsoft throttles anyway, every
worker stops until its Retry-After has passed, and the rate (and burst) is halved;
each window of successful sending after that adds back a tenth of the rate that met
the throttle (additive increase, multiplicative decrease), so that the rate stays
below where the wall was found and the next burst does not run into it again.

The bucket is one `MailboxBudget` row, locked while it changes, or, when CACHE_URL
points at Redis, one Redis hash changed by a Lua script (atomic on the server, on
the server's clock). Its size does not depend on how many messages go through it.
"""

import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import transaction

from integrations.providers.limits import with_messages_per_minute
from notifications.models import MailboxBudget

#: The rate factor never falls below this share of the budget.
MIN_FACTOR = 1 / 16
#: Each window of successful sending adds back this share of the rate factor that
#: Microsoft last throttled (of the whole budget before any throttle).
FACTOR_STEP = 0.1
#: When every slot is held: how soon to ask again (a send takes about this long).
BUSY_RETRY_SECONDS = 0.05
#: An idle bucket in Redis is forgotten after this long (a fresh one starts full).
REDIS_IDLE_SECONDS = 3600


@dataclass(frozen=True)
class Budget:
    """What one sender mailbox may submit through one tool."""

    #: At most this many messages in any `window` seconds ...
    messages: int
    window: float
    #: ... and this many at a time.
    concurrency: int
    #: Seconds a slot is held at most (a killed worker's frees after this).
    hold: float
    #: Seconds of successful sending after which a cut rate grows again.
    adapt_every: float

    @property
    def capacity(self) -> float:
        """The largest burst: a twentieth of the budget, at least one message."""
        return float(max(1, self.messages // 20))

    @property
    def rate(self) -> float:
        """Messages per second: the rest of the budget spread over the window."""
        return max(self.messages - self.capacity, 1.0) / self.window


def mailbox_budget(provider) -> Budget | None:
    """The budget of `provider`'s sender mailbox; None for no pacing.

    The provider's `sending_limits` (Microsoft's), with the tool's own "Messages per
    minute", else NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE, as the message budget; 0 in
    that setting turns pacing off. A minute is NOTIFICATIONS_PACING_WINDOW_SECONDS.
    """
    limits = provider.sending_limits
    everyone = settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE
    if limits is None or everyone == 0:
        return None
    limits = with_messages_per_minute(limits, provider.messages_per_minute or everyone)
    minute = float(settings.NOTIFICATIONS_PACING_WINDOW_SECONDS)
    # A submission ends within its network timeouts; a slot outlives that only
    # when its worker died.
    hold = 2 * max(float(settings.M365_HTTP_TIMEOUT), float(settings.SMTP_TIMEOUT), 1.0)
    return Budget(
        messages=limits.messages,
        window=limits.minutes * minute,
        concurrency=limits.concurrency,
        hold=hold,
        adapt_every=minute,
    )


@dataclass(frozen=True)
class MailboxSlot:
    """The answer to "may this mailbox submit one more message now?"."""

    integration_id: int
    mailbox: str
    #: The slot held, until `mailbox_slot_release`; "" when refused.
    slot_id: str = ""
    #: When refused: seconds until asking again may succeed, and why ("paused":
    #: Microsoft's Retry-After; "busy": every slot is held; "budget": no token).
    wait: float = 0.0
    reason: str = ""
    free_at: datetime | None = field(default=None, compare=False)

    @property
    def taken(self) -> bool:
        return bool(self.slot_id)


@dataclass
class _Bucket:
    """The state of one bucket and the two operations on it (the Lua script below
    is the same for Redis)."""

    rate: float = 0.0
    capacity: float = 0.0
    tokens: float = 0.0
    tokens_at: float | None = None
    factor: float = 1.0
    factor_at: float = 0.0
    step: float = FACTOR_STEP
    resume_at: float = 0.0
    in_flight: dict = field(default_factory=dict)

    def _refill(self, now: float, budget: Budget) -> None:
        self.rate, self.capacity = budget.rate, budget.capacity
        capacity = max(1.0, budget.capacity * self.factor)
        if self.tokens_at is None:
            self.tokens, self.tokens_at = capacity, now
        else:
            elapsed = max(0.0, now - self.tokens_at)
            self.tokens = min(
                capacity, self.tokens + elapsed * budget.rate * self.factor
            )
            self.tokens_at = max(now, self.tokens_at)
        self.in_flight = {k: v for k, v in self.in_flight.items() if v > now}

    def take(self, now: float, budget: Budget, slot_id: str) -> tuple[float, str]:
        """Take a token and a slot: (0, "") or (seconds to wait, why not)."""
        self._refill(now, budget)
        if now < self.resume_at:
            return self.resume_at - now, "paused"
        if len(self.in_flight) >= budget.concurrency:
            return BUSY_RETRY_SECONDS, "busy"
        if self.tokens < 1:
            return (1 - self.tokens) / (budget.rate * self.factor), "budget"
        self.tokens -= 1
        self.in_flight[slot_id] = now + budget.hold
        return 0.0, ""

    def release(
        self, now: float, budget: Budget, slot_id: str, throttled_for: float | None
    ) -> None:
        """Give the slot back; adapt the rate to the answer."""
        self._refill(now, budget)
        self.in_flight.pop(slot_id, None)
        if throttled_for is not None:
            if now >= self.resume_at:
                # The first answer of this throttle (those of the submissions in
                # flight with it come while the mailbox is paused): one cut.
                self.step = FACTOR_STEP * self.factor
                self.factor = max(MIN_FACTOR, self.factor / 2)
            self.resume_at = max(self.resume_at, now + throttled_for)
            # Windows of successful sending count from when sending resumes.
            self.factor_at = max(self.factor_at, self.resume_at)
            # After the pause one message goes, then the cut rate: no burst.
            self.tokens, self.tokens_at = 1.0, self.resume_at
        elif self.factor < 1 and now - self.factor_at >= budget.adapt_every:
            self.factor = min(1.0, self.factor + self.step)
            self.factor_at = now


# --- the database ---------------------------------------------------------------------

_ROW_FIELDS = {
    "rate": "rate",
    "capacity": "capacity",
    "tokens": "tokens",
    "tokens_at": "tokens_at",
    "factor": "rate_factor",
    "factor_at": "rate_factor_at",
    "step": "rate_step",
    "resume_at": "resume_at",
    "in_flight": "in_flight",
}


def _locked_row(integration_id: int, mailbox: str) -> MailboxBudget:
    rows = MailboxBudget.objects.select_for_update().filter(
        integration_id=integration_id, mailbox=mailbox
    )
    row = rows.first()
    if row is None:
        MailboxBudget.objects.bulk_create(
            [MailboxBudget(integration_id=integration_id, mailbox=mailbox)],
            ignore_conflicts=True,
        )
        row = rows.get()
    return row


@transaction.atomic
def _database(integration_id: int, mailbox: str, operation) -> tuple[float, str]:
    """Run `operation(bucket, now)` on the row, locked (SELECT ... FOR UPDATE on
    PostgreSQL; SQLite runs IMMEDIATE transactions one at a time)."""
    row = _locked_row(integration_id, mailbox)
    bucket = _Bucket(**{attr: getattr(row, name) for attr, name in _ROW_FIELDS.items()})
    result = operation(bucket, time.time())
    for attr, name in _ROW_FIELDS.items():
        setattr(row, name, getattr(bucket, attr))
    row.save(update_fields=list(_ROW_FIELDS.values()))
    return result


# --- Redis ----------------------------------------------------------------------------

# The bucket as one hash: the fields of `_Bucket`, and "s:<slot id>" per slot held.
# KEYS[1] the hash; ARGV: operation ("take" or "release"), slot id, rate, capacity,
# concurrency, hold, adapt_every, throttled_for ("" for none), idle expiry, and the
# constants above. Returns {1 or 0, seconds to wait, reason}.
_LUA = """
local key = KEYS[1]
local op, slot = ARGV[1], ARGV[2]
local rate, capacity = tonumber(ARGV[3]), tonumber(ARGV[4])
local concurrency, hold = tonumber(ARGV[5]), tonumber(ARGV[6])
local adapt_every, throttled_for = tonumber(ARGV[7]), tonumber(ARGV[8])
local idle = tonumber(ARGV[9])
local min_factor, step, busy = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local s, held = {}, {}
local raw = redis.call('HGETALL', key)
for i = 1, #raw, 2 do
  if string.sub(raw[i], 1, 2) == 's:' then
    held[string.sub(raw[i], 3)] = tonumber(raw[i + 1])
  else
    s[raw[i]] = tonumber(raw[i + 1])
  end
end
local factor = s.factor or 1
local factor_at = s.factor_at or 0
local factor_step = s.step or step
local resume_at = s.resume_at or 0
local tokens, tokens_at = s.tokens, s.tokens_at
local cap = math.max(1, capacity * factor)
if tokens_at == nil then
  tokens, tokens_at = cap, now
else
  tokens = math.min(cap, tokens + math.max(0, now - tokens_at) * rate * factor)
  tokens_at = math.max(now, tokens_at)
end
local count = 0
for id, expires in pairs(held) do
  if expires <= now then
    redis.call('HDEL', key, 's:' .. id)
    held[id] = nil
  else
    count = count + 1
  end
end

local taken, wait, reason = 0, 0, ''
if op == 'take' then
  if now < resume_at then
    wait, reason = resume_at - now, 'paused'
  elseif count >= concurrency then
    wait, reason = busy, 'busy'
  elseif tokens < 1 then
    wait, reason = (1 - tokens) / (rate * factor), 'budget'
  else
    tokens = tokens - 1
    redis.call('HSET', key, 's:' .. slot, string.format('%.17g', now + hold))
    taken = 1
  end
else
  redis.call('HDEL', key, 's:' .. slot)
  if throttled_for ~= nil then
    if now >= resume_at then
      factor_step = step * factor
      factor = math.max(min_factor, factor / 2)
    end
    resume_at = math.max(resume_at, now + throttled_for)
    factor_at = math.max(factor_at, resume_at)
    tokens, tokens_at = 1, resume_at
  elseif factor < 1 and now - factor_at >= adapt_every then
    factor, factor_at = math.min(1, factor + factor_step), now
  end
end

local function num(x) return string.format('%.17g', x) end
redis.call('HSET', key, 'rate', num(rate), 'capacity', num(capacity),
  'tokens', num(tokens), 'tokens_at', num(tokens_at), 'factor', num(factor),
  'factor_at', num(factor_at), 'step', num(factor_step),
  'resume_at', num(resume_at))
redis.call('EXPIRE', key, idle)
return {taken, num(wait), reason}
"""


def _redis_cache() -> RedisCache | None:
    """The default cache when it is Redis (CACHE_URL=redis://...), else None."""
    default = caches["default"]
    return default if isinstance(default, RedisCache) else None


def _redis_key(redis: RedisCache, integration_id: int, mailbox: str) -> str:
    return redis.make_and_validate_key(
        f"notifications:pacing:{integration_id}:{mailbox}"
    )


def _redis(
    redis: RedisCache,
    *,
    integration_id: int,
    mailbox: str,
    budget: Budget,
    operation: str,
    slot_id: str,
    throttled_for: float | None = None,
) -> tuple[float, str]:
    key = _redis_key(redis, integration_id, mailbox)
    client = redis._cache.get_client(key, write=True)
    taken, wait, reason = client.register_script(_LUA)(
        keys=[key],
        args=[
            operation,
            slot_id,
            repr(budget.rate),
            repr(budget.capacity),
            budget.concurrency,
            repr(budget.hold),
            repr(budget.adapt_every),
            "" if throttled_for is None else repr(float(throttled_for)),
            int(max(REDIS_IDLE_SECONDS, 2 * budget.window)),
            repr(MIN_FACTOR),
            repr(FACTOR_STEP),
            repr(BUSY_RETRY_SECONDS),
        ],
    )
    reason = reason.decode() if isinstance(reason, bytes) else reason
    return float(wait), reason


# --- the services ---------------------------------------------------------------------


def mailbox_slot_take(
    *, integration_id: int, mailbox: str, budget: Budget
) -> MailboxSlot:
    """One submission from `mailbox` through the tool, if its budget allows now.

    Taken: a token and an in-flight slot, held until `mailbox_slot_release` (or for
    `budget.hold` seconds at most). Refused: `wait` and `free_at` say when to ask
    again. Atomic across workers.
    """
    mailbox = mailbox.lower()
    slot_id = uuid.uuid4().hex
    redis = _redis_cache()
    if redis is not None:
        wait, reason = _redis(
            redis,
            integration_id=integration_id,
            mailbox=mailbox,
            budget=budget,
            operation="take",
            slot_id=slot_id,
        )
    else:
        wait, reason = _database(
            integration_id,
            mailbox,
            lambda bucket, now: bucket.take(now, budget, slot_id),
        )
    if not reason:
        return MailboxSlot(integration_id, mailbox, slot_id)
    wait = wait if math.isfinite(wait) else budget.window
    return MailboxSlot(
        integration_id,
        mailbox,
        wait=wait,
        reason=reason,
        free_at=datetime.fromtimestamp(time.time() + wait, tz=UTC),
    )


def mailbox_slot_release(
    *, slot: MailboxSlot, budget: Budget, throttled_for: float | None = None
) -> None:
    """Give back a slot once the server has answered.

    `throttled_for`: the server throttled the message (429, SMTP 4.3.2 or 421) and
    every worker should wait this many seconds (its Retry-After, or the delivery's
    backoff); the mailbox's rate is cut (once per throttle). Otherwise the answer
    counts as a success, which lets a cut rate grow back once per window.
    """
    if not slot.taken:
        return
    redis = _redis_cache()
    if redis is not None:
        _redis(
            redis,
            integration_id=slot.integration_id,
            mailbox=slot.mailbox,
            budget=budget,
            operation="release",
            slot_id=slot.slot_id,
            throttled_for=throttled_for,
        )
        return
    _database(
        slot.integration_id,
        slot.mailbox,
        lambda bucket, now: bucket.release(now, budget, slot.slot_id, throttled_for),
    )
