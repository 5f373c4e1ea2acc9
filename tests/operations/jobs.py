"""Periodic job functions the operations tests register (by dotted path)."""

CALLS: list[str] = []


def record():
    CALLS.append("record")
    return {"calls": len(CALLS)}


def explode():
    CALLS.append("explode")
    raise RuntimeError("the mailbox\nwas unreachable")
