"""A Pipecat bot for the Media Streams end-to-end test, built from Pipecat's own pieces: its
FastAPI WebSocket transport and TwilioFrameSerializer, as a Twilio bot is (reference/ai-legs.md
§2.3). For every 20 ms of caller audio it plays 20 ms of a 600 Hz tone back; the key # ends the
pipeline, which closes the WebSocket: the bot hanging up. What it saw goes to STATS_FILE as one
JSON line per call when the call ends.

    python pipecat_bot.py PORT STATS_FILE
"""

import asyncio
import json
import math
import struct
import sys

import uvicorn
from fastapi import FastAPI, WebSocket

from pipecat.frames.frames import (
    EndFrame,
    InputAudioRawFrame,
    InputDTMFFrame,
    OutputAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner

TONE_HZ = 600.0
RATE = 8000

app = FastAPI()
stats_file = sys.argv[2]


class ToneBot(FrameProcessor):
    """Answers each caller frame with as much tone; '#' hangs up."""

    def __init__(self, stats, end):
        super().__init__()
        self.stats = stats
        self.end = end
        self.n = 0

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.stats["audio_frames"] += 1
            self.stats["audio_bytes"] += len(frame.audio)
            samples = len(frame.audio) // 2
            tone = b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * TONE_HZ * (self.n + i) / RATE)))
                for i in range(samples)
            )
            self.n += samples
            await self.push_frame(OutputAudioRawFrame(audio=tone, sample_rate=RATE, num_channels=1))
            return
        if isinstance(frame, InputDTMFFrame):
            self.stats["dtmf"].append(str(frame.button.value))
            if frame.button.value == "#":
                await self.end()
            return
        await self.push_frame(frame, direction)


@app.websocket("/ws")
async def media_stream(websocket: WebSocket):
    await websocket.accept()
    # As Pipecat's runner does: the first two messages are `connected` and `start`.
    connected = json.loads(await websocket.receive_text())
    start = json.loads(await websocket.receive_text())
    stats = {
        "connected": connected,
        "start": start,
        "audio_frames": 0,
        "audio_bytes": 0,
        "dtmf": [],
    }
    serializer = TwilioFrameSerializer(
        stream_sid=start["start"]["streamSid"],
        call_sid=start["start"]["callSid"],
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )
    transport = FastAPIWebsocketTransport(
        websocket,
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    worker = None

    async def end():
        await worker.queue_frame(EndFrame())

    pipeline = Pipeline([transport.input(), ToneBot(stats, end), transport.output()])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
    )

    @transport.event_handler("on_client_disconnected")
    async def on_disconnected(_transport, _client):
        stats["disconnected_by"] = stats.get("disconnected_by", "caller")
        await worker.cancel()

    await WorkerRunner(handle_sigint=False).run(worker)
    with open(stats_file, "a") as f:
        f.write(json.dumps(stats) + "\n")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
