//! The Lua scripts that make every write that checks before it writes one
//! atomic step on Redis (see the engine's documentation). Each touches the
//! keys of one session only, except the two cycle scripts, which a cluster
//! replaces with the steps in `cycle_steps`.

use ::redis::Script;

/// KEYS: session. ARGV: data, expire text, expire ms. 1 stored, 0 taken.
const INSERT_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'session_data', ARGV[1], 'expire_date', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
";

/// KEYS: session. ARGV: data, expire text, expire ms. 1 stored, 0 missing.
const UPDATE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'session_data', ARGV[1], 'expire_date', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
";

/// Compare-and-set. KEYS: session. ARGV: data read, expire text read, new
/// data, new expire text, new expire ms. 1 stored, -1 missing, or the
/// current `[data, expire]` when it is no longer what was read.
const PATCH_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local current = redis.call('HMGET', KEYS[1], 'session_data', 'expire_date')
if current[1] ~= ARGV[1] or current[2] ~= ARGV[2] then return current end
redis.call('HSET', KEYS[1], 'session_data', ARGV[3], 'expire_date', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
return 1
";

/// KEYS: old, new. ARGV: data, expire text, expire ms. 1 moved, 0 new taken.
const CYCLE_WITH_DATA_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], 'session_data', ARGV[1], 'expire_date', ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
redis.call('DEL', KEYS[1])
return 1
";

/// Moves the stored data if the old session's expiry is still the one found
/// live. KEYS: old, new. ARGV: old expire text read, new expire text, new
/// expire ms. 1 moved, 0 new taken, -1 old missing, or the old session's
/// current expire text when it changed.
const CYCLE_MOVE_SCRIPT: &str = r"
local expire = redis.call('HGET', KEYS[1], 'expire_date')
if not expire then return -1 end
if expire ~= ARGV[1] then return expire end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local data = redis.call('HGET', KEYS[1], 'session_data')
if not data then return -1 end
redis.call('HSET', KEYS[2], 'session_data', data, 'expire_date', ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
redis.call('DEL', KEYS[1])
return 1
";

/// Writes unconditionally: the copy that cycle-key in steps makes under a
/// new key no client knows yet. KEYS: session. ARGV: data, expire text,
/// expire ms. 1.
const PUT_SCRIPT: &str = r"
redis.call('HSET', KEYS[1], 'session_data', ARGV[1], 'expire_date', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
";

/// Compare-and-delete. KEYS: session. ARGV: data read, expire text read. 1
/// deleted, -1 missing, or the current `[data, expire]` when it is no
/// longer what was read.
const DELETE_IF_UNCHANGED_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local current = redis.call('HMGET', KEYS[1], 'session_data', 'expire_date')
if current[1] ~= ARGV[1] or current[2] ~= ARGV[2] then return current end
redis.call('DEL', KEYS[1])
return 1
";

/// The compiled scripts; each keeps its SHA1, so calls send `EVALSHA` and
/// load the script only when Redis does not know it (e.g. after a restart).
pub(super) struct Scripts {
    pub(super) insert: Script,
    pub(super) update: Script,
    pub(super) patch: Script,
    pub(super) cycle_with_data: Script,
    pub(super) cycle_move: Script,
    pub(super) put: Script,
    pub(super) delete_if_unchanged: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            insert: Script::new(INSERT_SCRIPT),
            update: Script::new(UPDATE_SCRIPT),
            patch: Script::new(PATCH_SCRIPT),
            cycle_with_data: Script::new(CYCLE_WITH_DATA_SCRIPT),
            cycle_move: Script::new(CYCLE_MOVE_SCRIPT),
            put: Script::new(PUT_SCRIPT),
            delete_if_unchanged: Script::new(DELETE_IF_UNCHANGED_SCRIPT),
        }
    }
}
