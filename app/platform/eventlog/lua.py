"""Building blocks that every Lua script of the product is composed from.

A script reads its inputs in order through two cursors, so each input is named where it is
read and no script body computes an index such as ``ARGV[a + 8]``::

    local stream_key = next_key()
    local ttl_s = tonumber(next_arg())
    while has_more_keys() do ... end      -- repeated per-item groups, read the same way

``script(*parts)`` puts the readers first, then the given parts (functions, then the body).

A script that takes many values per item (the ingress's append scripts) may take them packed
in one argument (``packed_args``): every argument costs the sender a formatted length and a
copy, so fifteen values per message cost more packed one by one than in one msgpack array.
``unpack_args()`` (``PACKED_ARGS_LUA``) then points ``next_arg`` at the unpacked values, so the
steps that read them are the same for packed and plain arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

__all__ = ["ARGUMENT_READERS", "PACKED_ARGS_LUA", "packed_args", "script"]

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

# For scripts whose next argument holds packed values (``packed_args``); needs ARGUMENT_READERS.
PACKED_ARGS_LUA = """
-- From here on, next_arg reads the values packed in the next argument.
local function unpack_args()
  next_arg, has_more_args = reader(cmsgpack.unpack(next_arg()))
end
"""

_msgpack = msgspec.msgpack.Encoder()


def packed_args(values: Sequence[str | int]) -> bytes:
    """``values`` as one argument for ``unpack_args()``: a msgpack array. str and int only:
    Redis's cmsgpack reads no msgpack ``bin`` (bytes), it fails the script instead. Lua sees
    each str as the same string a plain argument would be, each int as a number."""
    return _msgpack.encode(values)


def script(*parts: str) -> str:
    """The Lua source of one script: the argument readers, then ``parts`` in order."""
    return "\n".join(part.strip("\n") for part in (ARGUMENT_READERS, *parts)) + "\n"
