"""Seeded inputs for `audio-fft`: 16-bit PCM WAV clips (tones, chirps and noise), duration
lognormal (median ~6 s, tail to 60 s), sample rate 8/16/44.1/48 kHz, mono or stereo, like
voice notes up to recorded segments."""

from __future__ import annotations

import io
import math
import random
import wave

import numpy as np

RATES = [8000, 16000, 44100, 48000]


def generate(seed: int, n: int) -> list[tuple[bytes, str, str]]:
    rng = random.Random(f"audio-fft:{seed}")
    out = []
    for i in range(n):
        duration = min(60.0, max(0.5, rng.lognormvariate(math.log(6.0), 1.0)))
        rate = rng.choices(RATES, [0.15, 0.35, 0.3, 0.2])[0]
        channels = rng.choice([1, 1, 2])
        gen = np.random.default_rng(rng.getrandbits(32))
        t = np.arange(int(duration * rate)) / rate
        f0, f1 = gen.uniform(100, 1000), gen.uniform(1000, 4000)
        base = 0.4 * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / max(duration, 1e-3) / 2) * t)
        sig = np.stack([base + 0.05 * gen.standard_normal(len(t)) for _ in range(channels)], 1)
        buf = io.BytesIO()
        with wave.open(buf, "wb") as wav:
            wav.setnchannels(channels)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes((np.clip(sig, -1, 1) * 32767).astype("<i2").tobytes())
        out.append((buf.getvalue(), "audio/wav",
                    f"s{seed}-{i}-{duration:.1f}s-{rate}Hz-{channels}ch"))
    return out
