"""Building blocks that every Lua script of the product is composed from.

A script reads its inputs in order through two cursors, so each input is named where it is
read and no script body computes an index such as ``ARGV[a + 8]``::

    local stream_key = next_key()
    local ttl_s = tonumber(next_arg())
    while has_more_keys() do ... end      -- repeated per-item groups, read the same way

``script(*parts)`` puts the readers first, then the given parts (functions, then the body).
"""

from __future__ import annotations

__all__ = ["ARGUMENT_READERS", "script"]

ARGUMENT_READERS = """
local function reader(values)
  local cursor = 0
  local function next_value()
    cursor = cursor + 1
    return values[cursor]
  end
  local function has_more()
    return cursor < #values
  end
  return next_value, has_more
end
local next_key, has_more_keys = reader(KEYS)
local next_arg, has_more_args = reader(ARGV)
local function next_args(count)
  local values = {}
  for i = 1, count do
    values[i] = next_arg()
  end
  return values
end
"""


def script(*parts: str) -> str:
    """The Lua source of one script: the argument readers, then ``parts`` in order."""
    return "\n".join(part.strip("\n") for part in (ARGUMENT_READERS, *parts)) + "\n"
