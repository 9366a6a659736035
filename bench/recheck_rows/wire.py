"""Removal entries for the claim rows of ``threat_models/wire.md``."""

from __future__ import annotations

from ._common import (
    _HE_CTX,
    _WIRE,
    Removal,
    Row,
    _off,
)

_HE_CODEC = "securefl/he/_codec.py"
_CONTEXT_REFUSED = '        raise WireError("HE context bytes do not decode")'

ROWS: tuple[Row, ...] = (
    Row(
        "wire-bounded",
        "wire.md",
        "Decoding is bounded",
        (Removal(_WIRE, "    scan(raw, limits)\n    return _unpackb", "    return _unpackb"),),
    ),
    Row(
        "wire-scan",
        "wire.md",
        "The scan refuses every limit",
        (
            _off(_WIRE, "n > getattr(limits, _LIMIT_OF[kind])"),
            _off(_WIRE, "len(remaining) > limits.max_depth"),
            _off(_WIRE, "items > limits.max_items"),
            _off(_WIRE, "pos != len(data)"),
        ),
    ),
    Row(
        "wire-envelope-header",
        "wire.md",
        "The envelope header is checked before the payload is copied",
        (
            Removal(  # the payload copied out before the header is checked
                _WIRE,
                "        if check is not None:\n            check(header)\n",
                "        early = raw[value_end - header.payload_size : value_end]\n"
                "        if check is not None:\n            check(header)\n",
            ),
            _off(_WIRE, "_unpackb(raw[key_at:value_at], ENVELOPE_LIMITS) != name"),
        ),
    ),
    Row(
        "wire-no-foreign-exception",
        "wire.md",
        "No decoder lets a foreign exception escape",
        (
            Removal(
                _WIRE,
                "except (ValueError, msgpack.ExtraData,",
                "except (msgpack.ExtraData,",
            ),
        ),
    ),
    Row(
        "wire-fuzz-regressions",
        "wire.md",
        "Regressions found by fuzzing stay fixed",
        (
            Removal(
                _WIRE, "not isinstance(dtype, str)\n        or dtype", "False\n        or dtype"
            ),
        ),
    ),
    Row(
        "wire-stage-limits",
        "wire.md",
        "Stage limits follow what the stage may carry",
        (  # each decoder falls back to the generic limits
            Removal(
                "securefl/secagg/_messages.py",
                "obj = unpack(payload, limits=decode_limits(stage, cohort_size))",
                "obj = unpack(payload)",
            ),
            Removal(
                "securefl/runtime/messages.py",
                "    obj = unpack(data, limits=limits)",
                "    obj = unpack(data)",
            ),
            Removal(
                "securefl/he/_messages.py",
                "    obj = unpack(payload, limits=chunk_limits(chunks))",
                "    obj = unpack(payload)",
            ),
        ),
    ),
    Row(
        "wire-he-decoders",
        "wire.md",
        "The same holds for the decoders that hand bytes to TenSEAL",
        (  # what TenSEAL raises on bad bytes escapes instead of a WireError
            Removal(
                _HE_CTX,
                "    except Exception:\n" + _CONTEXT_REFUSED,
                "    except ZeroDivisionError:\n" + _CONTEXT_REFUSED,
            ),
            Removal(
                _HE_CODEC,
                "        except Exception:\n            raise WireError(\n"
                '                f"chunk {i} is not a ciphertext for preset',
                "        except ZeroDivisionError:\n            raise WireError(\n"
                '                f"chunk {i} is not a ciphertext for preset',
            ),
        ),
    ),
    Row(
        "wire-hollow-ciphertext",
        "wire.md",
        "A hostile site cannot crash the server with a ciphertext chunk",
        (  # two layers, each enough: the chunk's protobuf frame checked from the bytes, and
            # the loaded vector's structure; removed together (the segfault comes back)
            (
                Removal(
                    _HE_CODEC,
                    "        check_chunk_frame(preset, raw, n, i)  # from the bytes",
                    "        # from the bytes",
                ),
                Removal(_HE_CODEC, "        _check_structure(vec, preset, first_parms, i)\n", ""),
            ),
        ),
    ),
)
