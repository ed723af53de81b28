"""TensorBoard event files without TensorFlow: scalars written as TensorBoard reads them.

    writer = EventFileWriter("runs/x/tensorboard")   # events.out.tfevents.<time>.<host>.jaxrobust
    writer.scalars({"train/loss": 0.7, "train/acc": 0.4}, step=20)
    writer.close()
    read_scalars(writer.path)                         # [(step, tag, value), ...]

Format: a TFRecord file (Abadi et al. 2016, TensorFlow's record framing) of ``Event`` protocol buffers:
each record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``
(little endian; masked crc = ((c >> 15) | (c << 17)) + 0xa282ead8 mod 2^32, CRC-32C of Castagnoli et al.
1993), the first event carrying ``file_version = "brain.Event:2"``, each further one ``wall_time`` (field 1,
double), ``step`` (2, varint) and a ``Summary`` (5) of ``Value``s {tag (1), simple_value (2, float)}.
Only these fields are encoded, so the writer needs neither protobuf nor tensorboard.
"""

from __future__ import annotations

import os
import socket
import struct
import time

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _table() -> list[int]:
  out = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ _POLY if c & 1 else c >> 1
    out.append(c)
  return out


_TABLE = _table()


def crc32c(data: bytes) -> int:
  """CRC-32C of ``data`` (e.g. crc32c(b'123456789') == 0xE3069283)."""
  c = 0xFFFFFFFF
  for b in data:
    c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def _masked(data: bytes) -> bytes:
  c = crc32c(data)
  return struct.pack("<I", (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _varint(n: int) -> bytes:
  n &= (1 << 64) - 1  # negative int64 as protobuf writes it
  out = bytearray()
  while True:
    b = n & 0x7F
    n >>= 7
    out.append(b | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
  return _varint(number << 3 | wire) + payload


def _bytes_field(number: int, data: bytes) -> bytes:
  return _field(number, 2, _varint(len(data)) + data)


def encode_event(*, wall_time: float, step: int = 0, scalars: dict | None = None, file_version: str | None = None
                 ) -> bytes:
  """One ``Event`` message: wall_time, step, and either a file_version or a summary of scalar values."""
  out = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(int(step)))
  if file_version is not None:
    out += _bytes_field(3, file_version.encode())
  if scalars:
    values = b"".join(_bytes_field(1, _bytes_field(1, str(tag).encode()) + _field(2, 5, struct.pack("<f", float(v))))
                      for tag, v in scalars.items())
    out += _bytes_field(5, values)
  return out


def frame(data: bytes) -> bytes:
  """``data`` as one TFRecord."""
  length = struct.pack("<Q", len(data))
  return length + _masked(length) + data + _masked(data)


class EventFileWriter:
  """Appends scalar summaries to a new event file in ``logdir`` (created if missing); ``path`` names it."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    self.path = os.path.join(logdir, f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.jaxrobust")
    self._file = open(self.path, "ab")
    self._file.write(frame(encode_event(wall_time=time.time(), file_version="brain.Event:2")))
    self._file.flush()

  def scalars(self, values: dict, step: int) -> None:
    """One event at ``step`` holding every (tag, float value) of ``values``; non-finite values are kept."""
    self._file.write(frame(encode_event(wall_time=time.time(), step=step, scalars=values)))
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def read_records(path: str):
  """The TFRecord payloads of ``path``, checking both CRCs (ValueError naming the offset on a mismatch)."""
  with open(path, "rb") as f:
    data = f.read()
  i = 0
  while i < len(data):
    length_bytes = data[i:i + 8]
    (n,) = struct.unpack("<Q", length_bytes)
    if data[i + 8:i + 12] != _masked(length_bytes) or data[i + 12 + n:i + 16 + n] != _masked(data[i + 12:i + 12 + n]):
      raise ValueError(f"{path}: corrupt record at byte {i} (CRC mismatch)")
    yield data[i + 12:i + 12 + n]
    i += 16 + n


def _fields(message: bytes):
  """(field number, wire type, value) of a protobuf message; value bytes for wire types 1, 2 and 5."""
  i = 0
  while i < len(message):
    key, i = _read_varint(message, i)
    number, wire = key >> 3, key & 7
    if wire == 0:
      value, i = _read_varint(message, i)
    elif wire == 1:
      value, i = message[i:i + 8], i + 8
    elif wire == 5:
      value, i = message[i:i + 4], i + 4
    elif wire == 2:
      n, i = _read_varint(message, i)
      value, i = message[i:i + n], i + n
    else:
      raise ValueError(f"unsupported protobuf wire type {wire}")
    yield number, wire, value


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
  shift = out = 0
  while True:
    b = data[i]
    i += 1
    out |= (b & 0x7F) << shift
    shift += 7
    if not b & 0x80:
      return out, i


def read_scalars(path: str) -> list[tuple[int, str, float]]:
  """Every (step, tag, value) of the scalar summaries in an event file, in file order."""
  out = []
  for record in read_records(path):
    step, values = 0, []
    for number, _, value in _fields(record):
      if number == 2:
        step = value
      elif number == 5:
        for vn, _, v in _fields(value):
          if vn == 1:
            tag, scalar = None, None
            for fn, _, fv in _fields(v):
              if fn == 1:
                tag = fv.decode()
              elif fn == 2:
                scalar = struct.unpack("<f", fv)[0]
            values.append((tag, scalar))
    out += [(step, tag, value) for tag, value in values]
  return out
