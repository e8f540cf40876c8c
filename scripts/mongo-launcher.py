#!/usr/bin/env python3
# Runs nx-27017 (PyPI nx-27017==0.8.1, a MongoDB-wire-protocol server on SQLite) in the
# foreground for tests, after monkeypatching it so the Rust `mongodb` 3.x driver can use
# change streams. Takes the same arguments as `nx-27017`, e.g.
#   python mongo-launcher.py --host 127.0.0.1 -p 27018 --db /tmp/test.db
# Unlike `nx-27017` it never daemonizes (-d also runs in the foreground) and writes no PID
# or log file (--pid-file / --log-file are accepted and ignored), so several instances can
# run at once; it logs to stderr and exits on SIGTERM/SIGINT.
#
# Patches:
#  1. Change-stream cursor ids start at 2**40 and are bson Int64: the server counted from
#     1000, so they went out as int32, and the Rust driver requires an Int64 cursor id.
#  2. Each change event's clusterTime becomes a bson Timestamp (seconds now, increment from
#     a process-wide counter, so strictly increasing): the server sent a datetime.
#  3. A null updateDescription is dropped from change events: drivers expect a document there
#     or no field at all.
#  4. A change-stream getMore with nothing new waits, polling every 5 ms, up to its
#     maxTimeMS (the driver's maxAwaitTimeMS; 1000 ms when absent), as MongoDB does; the
#     server answered at once, so drivers polled in a tight loop (~2,200 round trips/s).
#     Commands run in worker threads (asyncio.to_thread, or a thread per connection with
#     --threaded), and the per-database lock is released between polls, so a waiting getMore
#     blocks neither the event loop nor other clients. The default thread pool is enlarged
#     (it holds only cpu_count+4 threads) so waiting getMores cannot starve other commands.
#  5. Open database files are no longer capped at 100: past the cap the server evicts
#     least-recently-used databases and then answers "Cannot operate on a closed database"
#     for them; tests use a database each.
#  6. An update that sets a boolean takes the server's Python path: its SQL path binds the
#     value as an SQLite parameter, and SQLite stores Python's False as the integer 0, so a
#     `$set` of `deleted: false` came back as 0 (MongoDB keeps the boolean).
from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bson.int64 import Int64
from bson.timestamp import Timestamp

import nx_27017.changestream as changestream
import nx_27017.daemon as daemon
import nx_27017.handler as handler
import nx_27017.nx_27017 as entry
import nx_27017.server as server
from nx_27017.handler import NeoSQLiteHandler
from neosqlite.collection.query_helper._sql_updates import SqlUpdatesMixin

POLL_INTERVAL_S = 0.005
DEFAULT_AWAIT_MS = 1000
WORKER_THREADS = 256

_stopping = threading.Event()

# 1. Int64 cursor ids from 2**40 (data cursors use 10**12 upwards, as plain ints).
changestream._cursor_id_counter = map(Int64, itertools.count(2**40))

# 2 and 3. clusterTime as a Timestamp; no null updateDescription.
_ts_increment = itertools.count(1)
_translate_row = changestream.ChangeStreamManager._translate_row


def _patched_translate_row(self, stream, rowid, row):
    event = _translate_row(self, stream, rowid, row)
    if event is not None:
        event["clusterTime"] = Timestamp(int(time.time()), next(_ts_increment))
        if event.get("updateDescription", 0) is None:
            del event["updateDescription"]
    return event


changestream.ChangeStreamManager._translate_row = _patched_translate_row

# 4. Empty change-stream getMore waits up to maxTimeMS. handle_command takes the database
# lock itself, so calling it again from here polls without holding the lock in between.
_handle_command = NeoSQLiteHandler.handle_command


def _patched_handle_command(self, msg):
    result = _handle_command(self, msg)
    body = next((d for kind, d in msg.get("sections", ()) if kind == "body"), None)
    if not isinstance(body, dict) or "getMore" not in body:
        return result
    try:
        cursor_id = int(body["getMore"])
    except (TypeError, ValueError):
        return result
    streams = self._change_stream_manager
    wait_ms = body.get("maxTimeMS") or body.get("maxAwaitTimeMS") or DEFAULT_AWAIT_MS
    deadline = time.monotonic() + float(wait_ms) / 1000
    while (
        (result[1].get("cursor") or {}).get("nextBatch") == []
        and streams.get_stream(cursor_id) is not None
        and time.monotonic() < deadline
        and not _stopping.wait(POLL_INTERVAL_S)
    ):
        result = _handle_command(self, msg)
    return result


NeoSQLiteHandler.handle_command = _patched_handle_command

# Room for many concurrently waiting getMores in the asyncio server's thread pool.
_run_server = server.run_server


async def _patched_run_server(host, port, handler):
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(WORKER_THREADS, "nx-worker"))
    # On exit asyncio cancels each connection's task, and Python 3.11 then logs a
    # CancelledError traceback per open connection; keep those quiet.
    def on_error(loop, context):
        if not isinstance(context.get("exception"), asyncio.CancelledError):
            loop.default_exception_handler(context)

    loop.set_exception_handler(on_error)
    await _run_server(host, port, handler)


server.run_server = _patched_run_server

# Patch 5: never evict open databases (see the header).
handler._MAX_OPEN_DBS = 1_000_000


# Patch 6: booleans in an update keep their type (see the header).
def _holds_bool(value) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(_holds_bool(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_bool(v) for v in value)
    return False


_can_use_sql_updates = SqlUpdatesMixin._can_use_sql_updates


def _patched_can_use_sql_updates(self, update_spec, doc_id, original_doc=None):
    if _holds_bool(update_spec):
        return False
    return _can_use_sql_updates(self, update_spec, doc_id, original_doc)


SqlUpdatesMixin._can_use_sql_updates = _patched_can_use_sql_updates


# Foreground only, no PID or log file; SIGTERM/SIGINT end waiting getMores and exit.
def _run_foreground(args):
    def _exit(signum, frame):
        _stopping.set()
        sys.exit(0)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    daemon.run_server_sync(args)


entry.run_foreground = entry.run_as_daemon = _run_foreground

if __name__ == "__main__":
    # The server logs two INFO lines per command; keep warnings and errors only (unless -v).
    if "-v" not in sys.argv and "--verbose" not in sys.argv:
        logging.basicConfig(level=logging.WARNING)
    sys.exit(entry.main())
