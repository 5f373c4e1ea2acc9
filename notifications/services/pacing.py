"""Per-mailbox pacing: stay under what Microsoft lets one mailbox send, all workers
together, and learn a stricter limit when Microsoft says so anyway.

The limits are the providers' declarations (`integrations.providers.limits`):
Exchange Online accepts 30 messages a minute from one mailbox by SMTP ("451 4.3.2"
beyond it), one at a time; Microsoft Graph 10,000 requests per 10 minutes and 4 at a
time per app and mailbox (429 ApplicationThrottled or MailboxConcurrency, with
Retry-After). A tool's own "Messages per minute" replaces the message budget, and
NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE does for the tools without one (0: no pacing).

The rule: **never more than the budget's N messages in any window of its W seconds**
(Microsoft states its limits that way, "N requests per W", and does not say where
its windows start), and otherwise as many as that allows. A token bucket cannot do
both: with capacity C and rate r, a W-window may see C + r*W, so r <= (N - C) / W,
and a small budget (30 a minute, or the scaled-down budgets of tests) loses C/N of
it. Instead each (tool, sender mailbox) counts the messages answered in the last W
seconds, in SLOTS slots of W/SLOTS seconds each: a message may go when those
counted, plus those in flight, are fewer than N. A slot is forgotten only once all
of it is older than W, so a message counts for between W and W + W/SLOTS seconds:
the count is never below the truth (the bound holds exactly), and a backlog goes
out at N per W + W/SLOTS + one round trip (99% of the budget with 100 slots when
the round trip is short against W). A message counts from when its answer came
(or, for a worker killed mid-send, from when its slot lapsed), never from when it
was handed over: the server saw it no later than that, so late arrivals (network,
queues) cannot push two of Microsoft's windows' worth into one. A throttled
request counts too (Microsoft may count it).

- Graph, 10,000 per 600 s, 4 at a time: slots of 6 s; at Graph's usual 0.2-1 s
  per sendMail, 4 at a time is 4-20 a second, so the concurrency (4 slots, below)
  mostly binds before the budget (16.7 a second) does; a faster backlog sends up
  to 10,000 at once, then each further message a window (and a slot) after the
  answer to the one 10,000 before it: never over Microsoft's limit, and no 429
  for the rate however the 10 minutes are counted.
- Exchange SMTP, 30 per 60 s, one at a time: slots of 0.6 s; 30 messages go one
  after another, then the mailbox waits until the first of them is a minute (and
  0.6 s) old: never a 4.3.2 for the rate, and 30 per 60.6 s for a backlog.

The state is O(1) per mailbox, whatever the number of messages: at most SLOTS + 1
slot counts, the tool's concurrency in in-flight slots, and a few numbers.

In flight: each message also holds one of the tool's concurrency slots while it
is submitted; at most that many are held at once (all workers together), and each
lapses after `hold` seconds, so the slots of a worker killed mid-send free
themselves (and then count as sent, in case they were).

When Microsoft throttles anyway (its limit is lower than the budget: another
product shares the app registration, or the tool was told too much), every worker
pauses until the Retry-After has passed, and the mailbox learns the limit it met:
the messages accepted since it started sending without a break (`A`), over the
time from the first of their answers to the end of the Retry-After (`S`): the
server took A in S seconds and would take no more. Its window opened when it
counted the first of them, just before that answer, and closes no later than the
Retry-After ends, so S falls short of the server's window by at most the first
answer's way back (milliseconds; covered by the slot rounding, and counting from
answers shifts every later window the same way). Against a fixed-window server
this is exact; against a sliding one, conservative. From then on the mailbox keeps
to A per S (S between MIN_LEARNED_WINDOW and W, rate-preserving beyond W), at
least MIN_CUT below the rate of the limit that was in force (N/W, or the last A
per S), and never below MIN_FACTOR of the budget's rate; what was counted before
counts as of the throttle in the new window (never less than the truth). Each `adapt_every` (a pacing minute) of sending without a throttle adds
back RECOVERY_STEP of A, until the learned limit reaches the budget's rate and is
dropped; going too far meets the wall again and is learned again (additive
increase, a measured decrease). A throttle without Retry-After (SMTP 4.3.2) uses
the delivery's backoff as S, which can only make the learned limit stricter.
Against the sandbox's fixed 2-second windows (bench/throttling.py), the first
burst meets the wall once and the rest goes at the learned limit without a 429.

One write per message: a worker may hold a success back (`later=True`) and write
it with its next take for the mailbox, in the same transaction, counted as of its
answer; `mailbox_slots_flush` writes the rest when a run stops.

The state is one `MailboxBudget` row, locked while it changes, or, when CACHE_URL
points at Redis, one Redis hash changed by a Lua script (atomic on the server, on
the server's clock). Both hold the same fields (`_Bucket`): in the row, all of them
in the JSON column `in_flight` (the in-flight slots "s:<id>", the slot counts
"c:<index>", the numbers by name); the row's other columns show the same state in
a form to read (`rate`, `capacity`, `tokens` left now, `rate_factor`, `resume_at`).
"""

import logging
import math
import threading
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

logger = logging.getLogger(__name__)

#: A window is counted in this many slots (a message counts for W to W + W/SLOTS).
SLOTS = 100
#: A learned limit never has a shorter window than this (seconds).
MIN_LEARNED_WINDOW = 1.0
#: A throttle cuts the rate of the limit in force (N/W) by at least this share.
MIN_CUT = 0.1
#: A learned limit never falls below this share of the budget's rate.
MIN_FACTOR = 1 / 100
#: Each `adapt_every` of sending without a throttle adds back this share of the
#: learned limit (at least one message).
RECOVERY_STEP = 0.1
#: When every slot is held: how soon to ask again (a send takes about this long).
BUSY_RETRY_SECONDS = 0.02
#: An idle bucket in Redis is forgotten after this long (or twice the window, if
#: longer); a fresh one has sent nothing.
REDIS_IDLE_SECONDS = 3600
#: The numbers of a bucket (besides "s:<slot id>" and "c:<slot index>").
_SCALARS = ("n", "bw", "ln", "lw", "step", "at", "resume", "width", "ea", "ec", "last")


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
    #: Seconds of successful sending after which a learned limit grows again.
    adapt_every: float

    @property
    def rate(self) -> float:
        """Messages per second, over a long run."""
        return self.messages / self.window


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
    #: Microsoft's Retry-After; "busy": every slot is held; "budget": the window's
    #: messages are all used).
    wait: float = 0.0
    reason: str = ""
    free_at: datetime | None = field(default=None, compare=False)

    @property
    def taken(self) -> bool:
        return bool(self.slot_id)


def _index(moment: float, width: float) -> str:
    """The key of the slot holding `moment` (the same text as the Lua script's)."""
    return f"c:{math.floor(moment / width)}"


class _Bucket:
    """One mailbox's state, as a flat mapping (the Redis hash's fields; the Lua
    script below does the same on the server), and the two operations on it.

    "n", "bw": the budget last used (a new one starts afresh); "ln", "lw": the
    limit learned from a throttle, messages per seconds (ln 0: none, the budget);
    "step", "at": what recovery adds, and when the learned limit last changed;
    "resume": nothing is sent before this; "width": the slot width in use; "ea",
    "ec", "last": since when the mailbox has been sending without a break, the
    messages accepted since, and its last take or answer; "s:<slot id>": a
    submission in flight, until when; "c:<index>": messages answered in that slot.
    """

    def __init__(self, state: dict | None = None):
        self.h = {}
        for key, value in (state or {}).items():
            if key in _SCALARS or key[:2] in ("s:", "c:"):
                self.h[key] = float(value)
            elif ":" not in key:  # a slot written before the counts existed
                self.h[f"s:{key}"] = float(value)

    def limit(self, budget: Budget) -> tuple[float, float]:
        """(messages, window) in force: the learned limit, else the budget."""
        if self.h.get("ln", 0) > 0:
            return self.h["ln"], self.h["lw"]
        return float(budget.messages), float(budget.window)

    def _count(self, moment: float) -> None:
        key = _index(moment, self.h["width"])
        self.h[key] = self.h.get(key, 0.0) + 1

    def _collapse(self, now: float, width: float) -> None:
        """New slot widths: everything counted now counts as of `now` (never less
        than the truth)."""
        counts = [k for k in self.h if k.startswith("c:")]
        total = sum(self.h.pop(k) for k in counts)
        self.h["width"] = width
        if total:
            self.h[_index(now, width)] = total

    def _prepare(self, now: float, budget: Budget) -> tuple[float, float]:
        h = self.h
        if h.get("n") != budget.messages or h.get("bw") != budget.window:
            # Another budget (the tool's changed): nothing learned under the old one.
            h["n"], h["bw"], h["ln"] = float(budget.messages), budget.window, 0.0
        messages, window = self.limit(budget)
        if h.get("width") != window / SLOTS:
            self._collapse(now, window / SLOTS)
        for key in [k for k, v in h.items() if k.startswith("s:") and v <= now]:
            # A killed worker's: it may have reached the server.
            self._count(h.pop(key))
        first = math.floor((now - window) / h["width"])
        for key in [k for k in h if k.startswith("c:") and int(k[2:]) < first]:
            del h[key]
        return messages, window

    def used(self) -> tuple[int, list[tuple[int, float]]]:
        """(submissions in flight, [(slot index, messages)] oldest first)."""
        held = sum(k.startswith("s:") for k in self.h)
        counts = sorted((int(k[2:]), v) for k, v in self.h.items() if k[:2] == "c:")
        return held, counts

    def take(self, now: float, budget: Budget, slot_id: str) -> tuple[float, str]:
        """Take a slot: (0, "") or (seconds to wait, why not)."""
        h = self.h
        messages, window = self._prepare(now, budget)
        if now < h.get("resume", 0.0):
            return h["resume"] - now, "paused"
        held, counts = self.used()
        if held >= budget.concurrency:
            return BUSY_RETRY_SECONDS, "busy"
        over = held + sum(n for _, n in counts) - messages + 1
        if over > 0:
            for index, n in counts:
                over -= n
                if over <= 0:
                    # When that slot is all older than the window.
                    return (index + 1) * h["width"] + window - now, "budget"
            return BUSY_RETRY_SECONDS, "busy"  # those in flight fill the window
        if not held and now - h.get("last", -math.inf) > max(
            1.0, 2 * window / messages
        ):
            # Sending starts again after a break: a new run of accepted messages.
            h["ea"], h["ec"] = now, 0.0
        h[f"s:{slot_id}"] = now + budget.hold
        h["last"] = now
        return 0.0, ""

    def release(
        self,
        now: float,
        budget: Budget,
        slot_id: str,
        throttled_for: float | None,
        age: float = 0.0,
    ) -> None:
        """Give the slot back, counting its message as of its answer (`age` seconds
        ago); learn from a throttle."""
        h = self.h
        messages, window = self._prepare(now, budget)
        answered = now - max(0.0, age)
        if h.pop(f"s:{slot_id}", None) is not None:
            self._count(answered)
        h["last"] = now
        if throttled_for is None:
            if answered >= h.get("ea", 0.0):
                if not h.get("ec"):
                    # The first accepted since sending started: the server's
                    # window opened just before this answer.
                    h["ea"] = answered
                h["ec"] = h.get("ec", 0.0) + 1
            if h.get("ln", 0) > 0 and now - h.get("at", 0.0) >= budget.adapt_every:
                grown = h["ln"] + h.get("step", 1.0)
                # Back to the budget once the learned limit allows as much.
                h["ln"] = 0.0 if grown / h["lw"] >= budget.rate else grown
                h["at"] = now
            return
        resume = h.get("resume", 0.0)
        if now >= resume:
            # The first answer of this throttle (those of the submissions in flight
            # with it come while the mailbox is paused): learn once.
            self._learn(now, budget, messages, window, throttled_for)
        h["resume"] = max(resume, now + throttled_for)
        h["at"] = max(h.get("at", 0.0), h["resume"])
        h["ea"], h["ec"] = h["resume"], 0.0

    def _learn(self, now, budget, messages, window, pause) -> None:
        h = self.h
        accepted = h.get("ec", 0.0)
        span = now - h.get("ea", now) + pause
        if accepted >= 1 and span > 0:
            learned_window = min(max(span, MIN_LEARNED_WINDOW), budget.window)
            learned = accepted * min(1.0, learned_window / span)
        else:  # throttled before anything went through: half
            learned_window, learned = window, messages / 2
        learned = min(learned, (1 - MIN_CUT) * messages / window * learned_window)
        learned = math.floor(
            max(learned, MIN_FACTOR * budget.rate * learned_window, 1.0)
        )
        h["ln"], h["lw"] = float(learned), learned_window
        h["step"] = float(max(1, math.ceil(learned * RECOVERY_STEP)))
        self._collapse(now, learned_window / SLOTS)


# --- the database ---------------------------------------------------------------------


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
def _database(
    integration_id: int,
    mailbox: str,
    budget: Budget,
    operation,
    answered: list[tuple[str, float]] = (),
) -> tuple[float, str]:
    """Release the `answered` slots (id, age of the answer), then run `operation(bucket, now)`, on the row,
    locked (SELECT ... FOR UPDATE on PostgreSQL; SQLite runs IMMEDIATE transactions
    one at a time)."""
    row = _locked_row(integration_id, mailbox)
    bucket = _Bucket(row.in_flight)
    now = time.time()
    for slot_id, age in answered:
        bucket.release(now, budget, slot_id, None, age)
    result = operation(bucket, now)
    messages, window = bucket.limit(budget)
    held, counts = bucket.used()
    h = bucket.h
    row.in_flight = h
    # The same state, to read.
    row.rate = messages / window
    row.capacity = messages
    row.tokens = max(0.0, messages - held - sum(n for _, n in counts))
    row.tokens_at = now
    row.rate_factor = row.rate / budget.rate
    row.rate_factor_at = h.get("at", 0.0)
    row.rate_step = h.get("step", 0.0)
    row.resume_at = h.get("resume", 0.0)
    row.save(
        update_fields=[
            "in_flight",
            "rate",
            "capacity",
            "tokens",
            "tokens_at",
            "rate_factor",
            "rate_factor_at",
            "rate_step",
            "resume_at",
        ]
    )
    return result


# --- Redis ----------------------------------------------------------------------------

# The bucket as one hash with `_Bucket`'s fields, rewritten whole by each call.
# KEYS[1] the hash; ARGV: operation ("take" or "release"), slot id, the budget's
# messages and window, concurrency, hold, adapt_every, throttled_for ("" for none),
# idle expiry, then SLOTS, BUSY_RETRY_SECONDS, MIN_LEARNED_WINDOW, MIN_CUT,
# MIN_FACTOR, RECOVERY_STEP, and the slots answered meanwhile (released first, as
# successes: "<slot id>=<seconds since the answer>", space-separated). Returns {1 or 0, seconds to wait, reason}.
_LUA = """
local key = KEYS[1]
local op, slot = ARGV[1], ARGV[2]
local n, bw = tonumber(ARGV[3]), tonumber(ARGV[4])
local concurrency, hold = tonumber(ARGV[5]), tonumber(ARGV[6])
local adapt_every, pause = tonumber(ARGV[7]), tonumber(ARGV[8])
local idle, slots, busy = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local min_window, min_cut = tonumber(ARGV[12]), tonumber(ARGV[13])
local min_factor, step_share = tonumber(ARGV[14]), tonumber(ARGV[15])
local answered = ARGV[16]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local scalars = {'n', 'bw', 'ln', 'lw', 'step', 'at', 'resume', 'width', 'ea', 'ec',
  'last'}

local h, held, counts = {}, {}, {}
local raw = redis.call('HGETALL', key)
for i = 1, #raw, 2 do
  local k, v = raw[i], tonumber(raw[i + 1])
  local prefix = string.sub(k, 1, 2)
  if prefix == 's:' then
    held[string.sub(k, 3)] = v
  elseif prefix == 'c:' then
    counts[tonumber(string.sub(k, 3))] = v
  else
    h[k] = v
  end
end

local function limit()
  if (h.ln or 0) > 0 then return h.ln, h.lw end
  return n, bw
end
local function count_at(t)
  local i = math.floor(t / h.width)
  counts[i] = (counts[i] or 0) + 1
end
local function collapse(width)
  local total = 0
  for _, c in pairs(counts) do total = total + c end
  counts = {}
  h.width = width
  if total > 0 then counts[math.floor(now / width)] = total end
end

if h.n ~= n or h.bw ~= bw then h.n, h.bw, h.ln = n, bw, 0 end
local messages, window = limit()
if h.width ~= window / slots then collapse(window / slots) end
for id, lapse in pairs(held) do
  if lapse <= now then
    held[id] = nil
    count_at(lapse)
  end
end
local first = math.floor((now - window) / h.width)
for i, _ in pairs(counts) do
  if i < first then counts[i] = nil end
end
local function release(slot, pause, age)
  local answered = now - math.max(0, age)
  if held[slot] ~= nil then
    held[slot] = nil
    count_at(answered)
  end
  h.last = now
  if pause == nil then
    if answered >= (h.ea or 0) then
      if (h.ec or 0) == 0 then h.ea = answered end
      h.ec = (h.ec or 0) + 1
    end
    if (h.ln or 0) > 0 and now - (h.at or 0) >= adapt_every then
      local grown = h.ln + (h.step or 1)
      if grown / h.lw >= n / bw then h.ln = 0 else h.ln = grown end
      h.at = now
    end
  else
    local resume = h.resume or 0
    if now >= resume then
      local accepted = h.ec or 0
      local span = now - (h.ea or now) + pause
      local lw, learned
      if accepted >= 1 and span > 0 then
        lw = math.min(math.max(span, min_window), bw)
        learned = accepted * math.min(1, lw / span)
      else
        lw, learned = window, messages / 2
      end
      learned = math.min(learned, (1 - min_cut) * messages / window * lw)
      learned = math.floor(math.max(learned, min_factor * n / bw * lw, 1))
      h.ln, h.lw = learned, lw
      h.step = math.max(1, math.ceil(learned * step_share))
      collapse(lw / slots)
    end
    h.resume = math.max(resume, now + pause)
    h.at = math.max(h.at or 0, h.resume)
    h.ea, h.ec = h.resume, 0
  end
end
for id, age in string.gmatch(answered, '(%w+)=(%S+)') do
  release(id, nil, tonumber(age))
end
local held_n, used, order = 0, 0, {}
for _ in pairs(held) do held_n = held_n + 1 end
for i, c in pairs(counts) do
  used = used + c
  table.insert(order, i)
end
table.sort(order)

local taken, wait, reason = 0, 0, ''
if op == 'take' then
  local over = held_n + used - messages + 1
  if now < (h.resume or 0) then
    wait, reason = h.resume - now, 'paused'
  elseif held_n >= concurrency then
    wait, reason = busy, 'busy'
  elseif over > 0 then
    wait, reason = busy, 'busy'
    for _, i in ipairs(order) do
      over = over - counts[i]
      if over <= 0 then
        wait, reason = (i + 1) * h.width + window - now, 'budget'
        break
      end
    end
  else
    if held_n == 0 and now - (h.last or -math.huge) > math.max(1, 2 * window / messages) then
      h.ea, h.ec = now, 0
    end
    held[slot] = now + hold
    h.last = now
    taken = 1
  end
elseif op == 'release' then
  release(slot, pause, 0)
end

local function num(x) return string.format('%.17g', x) end
local fields = {}
for _, k in ipairs(scalars) do
  if h[k] ~= nil then
    table.insert(fields, k)
    table.insert(fields, num(h[k]))
  end
end
for id, lapse in pairs(held) do
  table.insert(fields, 's:' .. id)
  table.insert(fields, num(lapse))
end
for i, c in pairs(counts) do
  table.insert(fields, 'c:' .. string.format('%.0f', i))
  table.insert(fields, num(c))
end
redis.call('DEL', key)
redis.call('HSET', key, unpack(fields))
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
    answered: list[tuple[str, float]] = (),
) -> tuple[float, str]:
    key = _redis_key(redis, integration_id, mailbox)
    client = redis._cache.get_client(key, write=True)
    taken, wait, reason = client.register_script(_LUA)(
        keys=[key],
        args=[
            operation,
            slot_id,
            budget.messages,
            repr(float(budget.window)),
            budget.concurrency,
            repr(budget.hold),
            repr(budget.adapt_every),
            "" if throttled_for is None else repr(float(throttled_for)),
            int(max(REDIS_IDLE_SECONDS, 2 * budget.window)),
            SLOTS,
            repr(BUSY_RETRY_SECONDS),
            repr(MIN_LEARNED_WINDOW),
            repr(MIN_CUT),
            repr(MIN_FACTOR),
            repr(RECOVERY_STEP),
            " ".join(f"{slot_id}={age!r}" for slot_id, age in answered),
        ],
    )
    reason = reason.decode() if isinstance(reason, bytes) else reason
    return float(wait), reason


# --- the services ---------------------------------------------------------------------

#: Successful answers not written yet (`mailbox_slot_release(later=True)`), per
#: (tool, mailbox): the slot ids, written with this process's next change to that
#: mailbox's state, or by `mailbox_slots_flush`.
_answered: dict[tuple[int, str], tuple[Budget, list[tuple[str, float]]]] = {}
_answered_lock = threading.Lock()


def _take_answered(integration_id: int, mailbox: str) -> list[tuple[str, float]]:
    """The answers held back for the mailbox: (slot id, seconds since the answer),
    ages rather than times, so that the store counts them on its own clock."""
    with _answered_lock:
        _, answered = _answered.pop((integration_id, mailbox), (None, []))
    now = time.monotonic()
    return [(slot_id, now - at) for slot_id, at in answered]


def _apply(
    *,
    integration_id: int,
    mailbox: str,
    budget: Budget,
    operation: str,
    slot_id: str,
    throttled_for: float | None = None,
) -> tuple[float, str]:
    """One change to the mailbox's state, in Redis or in the database, after the
    answers held back for it."""
    answered = _take_answered(integration_id, mailbox)
    redis = _redis_cache()
    if redis is not None:
        return _redis(
            redis,
            integration_id=integration_id,
            mailbox=mailbox,
            budget=budget,
            operation=operation,
            slot_id=slot_id,
            throttled_for=throttled_for,
            answered=answered,
        )
    if operation == "take":

        def change(bucket, now):
            return bucket.take(now, budget, slot_id)

    elif operation == "release":

        def change(bucket, now):
            return bucket.release(now, budget, slot_id, throttled_for)

    else:

        def change(bucket, now):
            return 0.0, ""

    return _database(integration_id, mailbox, budget, change, answered)


def mailbox_slot_take(
    *, integration_id: int, mailbox: str, budget: Budget
) -> MailboxSlot:
    """One submission from `mailbox` through the tool, if its budget allows now.

    Taken: an in-flight slot, held until `mailbox_slot_release` (or for
    `budget.hold` seconds at most). Refused: `wait` and `free_at` say when to ask
    again. Atomic across workers. Writes the answers this process held back for
    the mailbox first (in the same transaction).
    """
    mailbox = mailbox.lower()
    slot_id = uuid.uuid4().hex
    wait, reason = _apply(
        integration_id=integration_id,
        mailbox=mailbox,
        budget=budget,
        operation="take",
        slot_id=slot_id,
    )
    if not reason:
        return MailboxSlot(integration_id, mailbox, slot_id)
    wait = max(0.0, wait) if math.isfinite(wait) else budget.window
    return MailboxSlot(
        integration_id,
        mailbox,
        wait=wait,
        reason=reason,
        free_at=datetime.fromtimestamp(time.time() + wait, tz=UTC),
    )


def mailbox_slot_release(
    *,
    slot: MailboxSlot,
    budget: Budget,
    throttled_for: float | None = None,
    later: bool = False,
) -> None:
    """Give back a slot once the server has answered; its message counts in the
    mailbox's window from now (the server saw it no later).

    `throttled_for`: the server throttled the message (429, SMTP 4.3.2 or 421) and
    every worker should wait this many seconds (its Retry-After, or the delivery's
    backoff); the mailbox learns the limit it met (once per throttle). Otherwise
    the answer counts as a success, which lets a learned limit grow back once per
    `budget.adapt_every`.

    `later`: a success is written with this process's next take for the mailbox
    (one write per message instead of two) or by `mailbox_slots_flush`, which the
    caller must then call when it stops sending. Until written, the slot counts as
    in flight for every worker; once written, the message counts from its answer
    (its age is passed, not a time, so the store's clock is the only one that
    matters). A throttle is always written at once (every worker must pause).
    """
    if not slot.taken:
        return
    if later and throttled_for is None:
        with _answered_lock:
            key = (slot.integration_id, slot.mailbox)
            _answered.setdefault(key, (budget, []))[1].append(
                (slot.slot_id, time.monotonic())
            )
        return
    _apply(
        integration_id=slot.integration_id,
        mailbox=slot.mailbox,
        budget=budget,
        operation="release",
        slot_id=slot.slot_id,
        throttled_for=throttled_for,
    )


def mailbox_slots_flush() -> None:
    """Write the answers this process held back (`mailbox_slot_release(later=True)`);
    call it when a run stops sending. Never raises: slots it cannot write lapse
    after their `hold`, as a killed worker's do."""
    with _answered_lock:
        keys = [(key, budget) for key, (budget, _) in _answered.items()]
    for (integration_id, mailbox), budget in keys:
        try:
            _apply(
                integration_id=integration_id,
                mailbox=mailbox,
                budget=budget,
                operation="flush",
                slot_id="",
            )
        except Exception:
            logger.exception("Could not give back the sending slots of %s", mailbox)
