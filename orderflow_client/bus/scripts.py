"""The bus's Lua scripts, each one round trip that would otherwise be many (or a race).

They run through ``register_script`` (EVALSHA, loading the script when Redis does not know it), inside
:meth:`~orderflow_client.bus.calls.RedisCalls.calling` like every other call. Lua runs each command it calls under
the ACL rights of the caller (``shared/acl.py`` grants EVALSHA and the commands).
"""

_APPENDED_ALREADY = """
local pairs_from = FIRST
local count = (#ARGV - pairs_from + 1) / 2
local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if tail and tail[2][1] == ARGV[#ARGV - 1] and tail[2][2] == ARGV[#ARGV] then
  local appended, ids = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', count), {}
  for _ = 1, count - #appended do ids[#ids + 1] = '' end  -- (trimmed since: a batch longer than the stream's cap)
  for i = #appended, 1, -1 do ids[#ids + 1] = appended[i][1] end
  return ids
end
"""
"""The start of both append scripts: a batch whose last entry (type tag and payload) is already the stream's last
was appended by an earlier try whose reply was lost (a pipeline that failed on another master, a connection dropped
after the write): its ids are returned and nothing is appended twice. Payloads carry their receive time and
sequence, so two different batches never end with the same bytes. A retry must come before the process appends
anything else to the stream (ingest's publisher holds its other appends meanwhile); the symbol's ingest, under its
lease, is a market stream's one writer. On a stream of several writers (the status stream) another's append in
between makes a retry append its batch again: a status twice, never an event."""

APPEND_BATCH_LUA = (
    _APPENDED_ALREADY.replace("FIRST", "2")
    + """
local ids = {}
for i = 2, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', ARGV[i], ARGV[i + 1])
end
return ids
"""
)
"""Appends a batch to one stream in a single round trip: KEYS = the stream; ARGV = max length, then (type tag,
payload) pairs; the tag is the entry's one field name. One reply per stream instead of one per entry is what lets
a Python publisher pass 150,000 entries/s. Returns the entry ids; a batch appended already, its ids
(:data:`_APPENDED_ALREADY`)."""

APPEND_FENCED_LUA = (
    _APPENDED_ALREADY.replace("FIRST", "3")
    + """
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -1 end
local ids = {}
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', ARGV[i], ARGV[i + 1])
end
return ids
"""
)
""":data:`APPEND_BATCH_LUA` under a lease: KEYS = the stream, the lease of its symbol (same slot); ARGV = max length,
the lease value the publisher holds, then (type tag, payload) pairs. -1 (nothing appended) when the lease holds
another value: an ingest paused past its lease appends nothing of a symbol another ingest owns now. A batch
appended already (before the lease moved) gives its ids, not -1: it is on the stream."""

ACK_BATCH_LUA = """
local acknowledged = 0
for entry_id in string.gmatch(ARGV[2], '%S+') do
  acknowledged = acknowledged + redis.call('XACK', KEYS[1], ARGV[1], entry_id)
end
return acknowledged
"""
"""XACK for many ids passed as one space-separated argument: redis.asyncio packs every argument in Python, so
thousands of separate ids cost more than the acknowledgement itself. KEYS = the stream; ARGV = group,
``"id id id ..."``. Returns how many were acknowledged."""

PUBLISH_ONCE_LUA = """
if #KEYS == 3 and redis.call('GET', KEYS[3]) ~= ARGV[5] then return -1 end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[3])
  if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[3]) end
  return 1
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 0
"""
"""Publishes an output once: ``SET NX`` on its deterministic id, and only then XADD (and PUBLISH for an exit), so a
redelivered entry never yields a second alert. KEYS = dedup key, stream[, lease]; ARGV = ttl (s), type tag,
payload, channel (``""`` for none)[, the lease value the publisher holds]. Returns 1 when published, 0 when it had
been already (its mark's time renewed: a write, so that a ``WAIT`` after it confirms the mark is on a replica), -1
when a lease was named and is no longer held with that value (fenced: nothing written)."""
