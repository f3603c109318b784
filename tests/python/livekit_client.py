"""A real libwebrtc LiveKit client (the official `livekit` Python package) against the mock
LiveKit server: a second opinion on the mock's wire protocol, which the gateway's tests trust.

It joins as the gateway would (a `sip` participant with the same grants and attributes),
publishes a 1000 Hz tone, sends a sip_dtmf packet, and measures the pitch of the agent track
the mock plays. Prints one JSON line with what it saw.

    python3 livekit_client.py WS_URL API_KEY API_SECRET
"""

import asyncio
import base64
import hashlib
import hmac
import json
import math
import sys
import time

import numpy as np
from livekit import rtc

RATE = 48000
TONE_HZ = 1000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(key: str, secret: str, room: str) -> str:
    now = int(time.time())
    claims = {
        "iss": key,
        "sub": "sip_+15550001111",
        "name": "Phone +15550001111",
        "kind": "sip",
        "nbf": now - 5,
        "exp": now + 600,
        "video": {
            "roomJoin": True,
            "room": room,
            "canPublish": True,
            "canSubscribe": True,
            "canPublishData": True,
            "canUpdateOwnMetadata": True,
        },
        "attributes": {"sip.callStatus": "ringing", "sip.phoneNumber": "+15550001111"},
        "roomConfig": {"agents": [{"agentName": "hume-agent"}]},
    }
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def pitch(pcm: np.ndarray, rate: int) -> float:
    if len(pcm) < rate // 10:
        return 0.0
    crossings = np.count_nonzero(np.diff(np.signbit(pcm).astype(np.int8)))
    return crossings / 2.0 / (len(pcm) / rate)


async def main(url: str, key: str, secret: str) -> None:
    room = rtc.Room()
    heard: list[np.ndarray] = []
    result = {"connected": False, "subscribed": False}

    async def listen(track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        async for ev in stream:
            heard.append(np.frombuffer(ev.frame.data, dtype=np.int16).copy())

    @room.on("track_subscribed")
    def on_track(track, publication, participant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            result["subscribed"] = True
            asyncio.ensure_future(listen(track))

    await asyncio.wait_for(room.connect(url, token(key, secret, "python-check")), 20)
    result["connected"] = True
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("phone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await asyncio.wait_for(room.local_participant.publish_track(track, options), 20)
    result["published"] = True
    n = RATE // 100
    for k in range(400):  # 4 s of 10 ms frames
        t = (np.arange(n) + k * n) / RATE
        pcm = (6000 * np.sin(2 * math.pi * TONE_HZ * t)).astype(np.int16)
        frame = rtc.AudioFrame(pcm.tobytes(), RATE, 1, n)
        await source.capture_frame(frame)
        if k == 100:
            await room.local_participant.publish_dtmf(code=9, digit="9")
    await asyncio.sleep(0.5)
    pcm = np.concatenate(heard) if heard else np.zeros(0, dtype=np.int16)
    loud = pcm[-RATE:] if len(pcm) >= RATE else pcm
    result["heard_samples"] = int(len(pcm))
    result["heard_hz"] = round(pitch(loud, RATE), 1)
    result["heard_rms"] = round(float(np.sqrt(np.mean(loud.astype(np.float64) ** 2))) if len(loud) else 0.0, 1)
    await room.disconnect()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
