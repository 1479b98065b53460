"""Audio featurizer: exact duration, sample rate and channels of real files (wave-written WAV,
ffmpeg-made WAVE_FORMAT_EXTENSIBLE, FLAC, MP3 CBR/VBR/no-Xing, Ogg Vorbis, Opus, M4A)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from feat_media import wav_bytes

from featurizers import extract

TONE_S = 3.2  # the ffmpeg-made audio is 3.2 s of a 440 Hz sine at 44.1 kHz


def _ok(f: dict[str, float], fmt: str) -> None:
    assert "malformed" not in f
    assert f["kind.audio"] == 1.0 and f[f"format.{fmt}"] == 1.0


class TestWav:
    @pytest.mark.parametrize(("seconds", "rate", "channels", "width"), [
        (1.0, 8000, 1, 1), (0.25, 16000, 2, 2), (2.5, 44100, 2, 2), (0.1, 48000, 6, 4),
    ])
    def test_exact_header_values(self, seconds: float, rate: int, channels: int,
                                 width: int) -> None:
        f = extract(wav_bytes(seconds, rate, channels, width))
        _ok(f, "wav")
        assert f["duration_s"] == pytest.approx(round(seconds * rate) / rate)
        assert (f["sample_rate"], f["channels"], f["bits_per_sample"]) == (rate, channels,
                                                                           8 * width)

    def test_wave_format_extensible(self, audios: Mapping[str, bytes]) -> None:
        body = audios["ext6ch.wav"]
        assert int.from_bytes(body[20:22], "little") == 0xFFFE
        f = extract(body)
        _ok(f, "wav")
        assert (f["sample_rate"], f["channels"], f["bits_per_sample"]) == (44100, 6, 24)
        assert f["duration_s"] == pytest.approx(TONE_S, abs=1e-3)

    def test_truncated_data_chunk_counts_what_arrived(self) -> None:
        body = wav_bytes(2.0, 8000, 1, 2)
        f = extract(body[: 44 + 8000 * 2])  # one second of the two
        assert f["duration_s"] == pytest.approx(1.0)


class TestCompressed:
    def test_flac_streaminfo(self, audios: Mapping[str, bytes]) -> None:
        f = extract(audios["stereo.flac"])
        _ok(f, "flac")
        assert (f["sample_rate"], f["channels"], f["bits_per_sample"]) == (44100, 2, 16)
        assert f["duration_s"] == pytest.approx(TONE_S, abs=1e-6)

    @pytest.mark.parametrize(("name", "vbr"), [("cbr.mp3", 0.0), ("vbr.mp3", 1.0)])
    def test_mp3_xing_or_info_frame_count(self, audios: Mapping[str, bytes], name: str,
                                          vbr: float) -> None:
        f = extract(audios[name])
        _ok(f, "mp3")
        assert (f["sample_rate"], f["channels"], f["vbr"]) == (44100, 1, vbr)
        # The frame count includes the encoder delay/padding: within two 26 ms frames.
        assert f["duration_s"] == pytest.approx(TONE_S, abs=0.06)

    def test_mp3_without_xing_uses_cbr_estimate(self, audios: Mapping[str, bytes]) -> None:
        body = audios["noxing.mp3"]
        assert b"Xing" not in body[:2000] and b"Info" not in body[:2000]
        f = extract(body)
        _ok(f, "mp3")
        assert f["duration_s"] == pytest.approx(TONE_S, abs=0.06)
        assert f["bitrate"] == pytest.approx(64000, rel=0.02)

    def test_ogg_vorbis_last_granule(self, audios: Mapping[str, bytes]) -> None:
        f = extract(audios["vorbis.ogg"])
        _ok(f, "vorbis")
        assert (f["sample_rate"], f["channels"]) == (44100, 1)
        assert f["duration_s"] == pytest.approx(TONE_S, abs=1e-3)

    def test_opus_pre_skip_and_48k_granules(self, audios: Mapping[str, bytes]) -> None:
        f = extract(audios["opus.opus"])
        _ok(f, "opus")
        assert (f["sample_rate"], f["channels"]) == (48000, 1)
        assert f["duration_s"] == pytest.approx(TONE_S, abs=1e-3)

    def test_m4a_aac_channels_from_esds(self, audios: Mapping[str, bytes]) -> None:
        f = extract(audios["aac.m4a"])
        _ok(f, "m4a")
        assert (f["sample_rate"], f["channels"]) == (44100, 1)
        assert f["duration_s"] == pytest.approx(TONE_S, abs=0.03)

    def test_audio_only_webm_is_audio(self, audios: Mapping[str, bytes]) -> None:
        f = extract(audios["opus_stereo.webm"])
        _ok(f, "webm")
        assert (f["sample_rate"], f["channels"]) == (48000, 2)
        assert f["duration_s"] == pytest.approx(TONE_S, abs=0.03)

    def test_streamed_webm_like_a_browser_recording(self, audios: Mapping[str, bytes]) -> None:
        f = extract(audios["piped_opus.webm"])
        _ok(f, "webm")
        assert f["duration_estimated"] == 1.0
        assert (f["sample_rate"], f["channels"]) == (48000, 1)
        assert f["duration_s"] == pytest.approx(TONE_S, abs=0.03)

    def test_video_webm_as_audio_kind_is_malformed(self, videos: Mapping[str, bytes]) -> None:
        assert extract(videos["webm_vp8.webm"], kind="audio")["malformed"] == 1.0

    def test_content_type_alone_does_not_make_text_audio(self) -> None:
        f = extract(b"definitely not audio", content_type="audio/mpeg")
        assert f["kind.audio"] == 1.0 and f["malformed"] == 1.0
