"""Validates recorded EVI chat messages with the models of Hume's official Python SDK.

usage: hume_sdk_validate.py GATEWAY_TO_EVI.jsonl EVI_TO_GATEWAY.jsonl

Every line of the first file must be a valid client message (the SDK's PublishEvent union),
every line of the second a valid server message (SubscribeEvent). Each is checked against the
model its `type` names and must also resolve to that model through the union, as the SDK's own
socket client parses it. The SDK models accept unknown fields (extra="allow"); here any field
the model does not define is an error, at any depth, so a misspelt optional field cannot pass.
Run by scripts/hume-sdk-check inside a virtualenv that has `hume` installed.
"""

import json
import sys

import pydantic
from hume.empathic_voice import (
    AssistantEnd,
    AssistantInput,
    AssistantMessage,
    AssistantProsody,
    AudioInput,
    AudioOutput,
    ChatMetadata,
    PauseAssistantMessage,
    ResumeAssistantMessage,
    SessionSettings,
    ToolCallMessage,
    ToolErrorMessage,
    ToolResponseMessage,
    UserInput,
    UserInterruption,
    UserMessage,
    WebSocketError,
)
from hume.empathic_voice.chat.types import PublishEvent
from hume.empathic_voice.types import SubscribeEvent

PUBLISH = {
    "audio_input": AudioInput,
    "session_settings": SessionSettings,
    "user_input": UserInput,
    "assistant_input": AssistantInput,
    "tool_response": ToolResponseMessage,
    "tool_error": ToolErrorMessage,
    "pause_assistant_message": PauseAssistantMessage,
    "resume_assistant_message": ResumeAssistantMessage,
}

SUBSCRIBE = {
    "chat_metadata": ChatMetadata,
    "user_message": UserMessage,
    "assistant_message": AssistantMessage,
    "assistant_prosody": AssistantProsody,
    "audio_output": AudioOutput,
    "assistant_end": AssistantEnd,
    "user_interruption": UserInterruption,
    "tool_call": ToolCallMessage,
    "tool_response": ToolResponseMessage,
    "tool_error": ToolErrorMessage,
    "error": WebSocketError,
    "session_settings": SessionSettings,
}


def undefined_fields(value, path):
    """Fields present on the wire that no model along the way defines."""
    found = []
    if isinstance(value, pydantic.BaseModel):
        for name in (value.model_extra or {}):
            found.append(f"{path}.{name}")
        for name in type(value).model_fields:
            found += undefined_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found += undefined_fields(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            found += undefined_fields(v, f"{path}.{k}")
    return found


def check(path, models, union, direction):
    adapter = pydantic.TypeAdapter(union)
    errors, counts = [], {}
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    for n, line in enumerate(lines, 1):
        where = f"{path}:{n}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{where}: not JSON: {e}")
            continue
        kind = raw.get("type") if isinstance(raw, dict) else None
        model = models.get(kind)
        if model is None:
            errors.append(f"{where}: type {kind!r} is not a {direction} message in the SDK")
            continue
        try:
            parsed = model.model_validate(raw)
            via_union = adapter.validate_python(raw)
        except pydantic.ValidationError as e:
            errors.append(f"{where}: {kind}: {e}")
            continue
        if type(via_union) is not model:
            errors.append(f"{where}: {kind} resolves to {type(via_union).__name__} in the union")
            continue
        extra = undefined_fields(parsed, kind)
        if extra:
            errors.append(f"{where}: fields the SDK does not define: {', '.join(extra)}")
        else:
            counts[kind] = counts.get(kind, 0) + 1
    return errors, counts, len(lines)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    all_errors = []
    for path, models, union, direction in (
        (sys.argv[1], PUBLISH, PublishEvent, "client"),
        (sys.argv[2], SUBSCRIBE, SubscribeEvent, "server"),
    ):
        errors, counts, total = check(path, models, union, direction)
        all_errors += errors
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"{direction} messages: {total - len(errors)}/{total} valid ({summary})")
    for e in all_errors[:50]:
        print(e, file=sys.stderr)
    if all_errors:
        print(f"{len(all_errors)} invalid message(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
