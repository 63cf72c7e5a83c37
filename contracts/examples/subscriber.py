"""Example: subscribe to the Party-member event streams with nothing but redis-py.

This file deliberately imports nothing from the project: copy it into any campus system.

    python subscriber.py --redis-url redis://127.0.0.1:6379/0 --prefix party \
        --family attendance --family member --group student-affairs --consumer host-1

It joins a consumer group on each family stream (created at the start of the stream the first
time), prints every event as one JSON line, and acknowledges it. Delivery is at least once: an
entry can arrive twice, so deduplicate on `event_id` where it matters (this example remembers
the ids it has seen in memory).
"""

from __future__ import annotations

import argparse
import json
import sys

import redis


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):  # the group exists already: fine
            raise


def main() -> int:
    parser = argparse.ArgumentParser(description="print Party-member events as JSON lines")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", default="party")
    parser.add_argument(
        "--family",
        action="append",
        required=True,
        help="member, activity, attendance, report, score or deadline",
    )
    parser.add_argument("--group", required=True, help="your system's consumer group")
    parser.add_argument("--consumer", default="example-1", help="unique per running process")
    parser.add_argument("--stop-after", type=int, default=0, help="exit after N events (0: never)")
    parser.add_argument("--idle-timeout", type=float, default=0, help="exit after N quiet seconds")
    args = parser.parse_args()

    client = redis.Redis.from_url(args.redis_url)
    streams: dict[bytes | str | memoryview, int | bytes | str | memoryview] = {
        f"{args.prefix}:{family}": ">" for family in args.family
    }
    for stream in args.family:
        ensure_group(client, f"{args.prefix}:{stream}", args.group)

    seen: set[str] = set()
    quiet = 0.0
    while True:
        batches: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = client.xreadgroup(
            args.group, args.consumer, streams, count=100, block=500
        )  # type: ignore[assignment]
        if not batches:
            quiet += 0.5
            if args.idle_timeout and quiet >= args.idle_timeout:
                return 0
            continue
        quiet = 0.0
        for stream, entries in batches:
            for entry_id, fields in entries:
                event_id = fields[b"event_id"].decode()
                if event_id not in seen:
                    seen.add(event_id)
                    envelope = json.loads(fields[b"envelope"])
                    line = {
                        "stream": stream.decode(),
                        "type": fields[b"type"].decode(),
                        "branch_id": fields[b"branch_id"].decode() or None,
                        "event_id": event_id,
                        "occurred_at": envelope["occurred_at"],
                        "data": envelope["data"],
                    }
                    print(json.dumps(line, ensure_ascii=False), flush=True)
                client.xack(stream, args.group, entry_id)
                if args.stop_after and len(seen) >= args.stop_after:
                    return 0


if __name__ == "__main__":
    sys.exit(main())
