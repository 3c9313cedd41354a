"""Wire protocol v1 (contract 1 of DESIGN.md): schemas, golden examples and the codec.

The JSON Schema files beside this module and the golden messages in `examples/`
are the contract; `docs/protocol.md` explains them and the canonical form.
"""

from edgefleet.protocol.canonical import format_number
from edgefleet.protocol.codec import (
    DEVICE_KINDS,
    HINTS,
    INGEST_KINDS,
    KINDS,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    REASON_CODES,
    SERVER_KINDS,
    WHY_NAMES,
    Message,
    ProtocolError,
    ResultRecord,
    SummaryRecord,
    check,
    decode,
    decode_message,
    encode,
    parse_topic,
    result_message,
    result_records,
    schema,
    summary_of_scores,
    summary_record,
    topic,
    validate,
    why_items,
)

__all__ = [
    "DEVICE_KINDS", "HINTS", "INGEST_KINDS", "KINDS", "MAX_PAYLOAD", "PROTOCOL_VERSION", "REASON_CODES",
    "SERVER_KINDS", "WHY_NAMES", "Message", "ProtocolError", "ResultRecord", "SummaryRecord", "check", "decode", "decode_message",
    "encode", "format_number", "parse_topic", "result_message", "result_records", "schema", "summary_of_scores", "summary_record", "topic",
    "validate", "why_items",
]
