"""Video featurizer: golden values for real ffmpeg files (MP4 both moov layouts, MOV, WebM VP8/VP9,
Matroska), bounded work on large files, and the opt-in ffprobe fallback."""

from __future__ import annotations

import struct
from collections.abc import Mapping

import pytest

from featurizers import extract

FRAME = 1 / 25  # the test videos are 2.5 s of testsrc at 25 fps, 320x240


def _golden(f: dict[str, float], codec: str) -> None:
    assert "malformed" not in f
    assert f["kind.video"] == 1.0
    assert abs(f["duration_s"] - 2.5) <= FRAME
    assert (f["width"], f["height"]) == (320.0, 240.0)
    assert f["fps"] == pytest.approx(25.0)
    assert f["bitrate"] == pytest.approx(f["bytes"] * 8 / f["duration_s"])
    assert f[f"codec.{codec}"] == 1.0


class TestMp4:
    def test_moov_at_end(self, videos: Mapping[str, bytes]) -> None:
        body = videos["mp4_moov_end.mp4"]
        assert body.index(b"moov") > body.index(b"mdat")
        f = extract(body)
        _golden(f, "h264")
        assert f["container.mp4"] == 1.0 and f["has_audio"] == 0.0

    def test_faststart_moov_first(self, videos: Mapping[str, bytes]) -> None:
        body = videos["mp4_faststart.mp4"]
        assert body.index(b"moov") < body.index(b"mdat")
        _golden(extract(body), "h264")

    def test_video_track_chosen_among_audio(self, videos: Mapping[str, bytes]) -> None:
        f = extract(videos["mp4_with_audio.mp4"])
        _golden(f, "h264")
        assert f["tracks"] == 2.0 and f["has_audio"] == 1.0
        assert (f["sample_rate"], f["channels"]) == (44100.0, 1.0)

    def test_quicktime_mov(self, videos: Mapping[str, bytes]) -> None:
        _golden(extract(videos["mov_mpeg4.mov"]), "mpeg4")

    def test_content_type_does_not_override_magic(self, videos: Mapping[str, bytes]) -> None:
        f = extract(videos["mp4_faststart.mp4"], content_type="application/json")
        _golden(f, "h264")

    def test_twenty_megabytes_of_media_before_moov(self, videos: Mapping[str, bytes]) -> None:
        body = videos["mp4_moov_end.mp4"]
        ftyp_end = int.from_bytes(body[:4], "big")
        pad = 20 << 20  # a 20 MiB box the walk must jump over, not read
        big = body[:ftyp_end] + struct.pack(">I4s", pad, b"free") + bytes(pad - 8) + body[ftyp_end:]
        f = extract(big)
        _golden(f, "h264")
        assert f["bytes"] == len(big)

    def test_version1_mvhd_and_mdhd(self, videos: Mapping[str, bytes]) -> None:
        # Rewrite the movie's mvhd as version 1 (64-bit times) the way long recordings store it.
        body = videos["mp4_faststart.mp4"]
        at = body.index(b"mvhd") - 4
        size = int.from_bytes(body[at : at + 4], "big")
        ver_at = at + 8
        ts, dur = struct.unpack_from(">II", body, ver_at + 12)
        rest = body[ver_at + 20 : at + size]
        v1 = struct.pack(">B3xQQIQ", 1, 0, 0, ts, dur) + rest
        box = struct.pack(">I4s", 8 + len(v1), b"mvhd") + v1
        moov_at = body.index(b"moov") - 4
        moov_size = int.from_bytes(body[moov_at : moov_at + 4], "big")
        new_moov_size = moov_size + len(box) - size
        patched = (body[:moov_at] + struct.pack(">I", new_moov_size) + body[moov_at + 4 : at]
                   + box + body[at + size :])
        _golden(extract(patched), "h264")

    def test_truncated_before_moov_is_malformed(self, videos: Mapping[str, bytes]) -> None:
        body = videos["mp4_moov_end.mp4"]
        f = extract(body[: body.index(b"moov") - 4])
        assert f["malformed"] == 1.0 and f["kind.video"] == 1.0
        assert "duration_s" not in f

    def test_box_budget_bounds_the_walk(self, videos: Mapping[str, bytes]) -> None:
        body = videos["mp4_moov_end.mp4"]
        ftyp_end = int.from_bytes(body[:4], "big")
        many = body[:ftyp_end] + struct.pack(">I4s", 8, b"free") * 5000 + body[ftyp_end:]
        assert extract(many, options={"max_elements": 1000})["malformed"] == 1.0
        _golden(extract(many, options={"max_elements": 20000}), "h264")


class TestMatroska:
    @pytest.mark.parametrize(("name", "codec", "container"), [
        ("webm_vp8.webm", "vp8", "webm"),
        ("webm_vp9.webm", "vp9", "webm"),
        ("mkv_h264.mkv", "h264", "matroska"),
    ])
    def test_segment_info_and_tracks(self, videos: Mapping[str, bytes], name: str, codec: str,
                                     container: str) -> None:
        f = extract(videos[name])
        _golden(f, codec)
        assert f[f"container.{container}"] == 1.0

    def test_header_only_prefix_is_enough(self, videos: Mapping[str, bytes]) -> None:
        body = videos["webm_vp8.webm"]
        # Info and Tracks precede the first Cluster, so a 4 KiB prefix has every feature but
        # the byte count.
        f = extract(body[:4096], kind="video")
        assert (f["width"], f["height"], f["fps"]) == (320.0, 240.0, 25.0)
        assert abs(f["duration_s"] - 2.5) <= FRAME

    def test_streamed_webm_without_duration(self, videos: Mapping[str, bytes]) -> None:
        body = videos["piped_vp8.webm"]
        assert b"\x44\x89" not in body[: body.index(b"\x1f\x43\xb6\x75")]  # no Duration
        f = extract(body)
        assert f["duration_estimated"] == 1.0
        _golden(f, "vp8")

    def test_fps_from_block_timestamps_without_default_duration(
        self, videos: Mapping[str, bytes]
    ) -> None:
        body = videos["piped_vp8.webm"]
        at = body.index(b"\x23\xe3\x83")  # DefaultDuration, 4-byte payload: 8 bytes in all
        assert body[at + 3] == 0x84
        voided = body[:at] + b"\xec\x86" + bytes(6) + body[at + 8 :]  # same size Void element
        f = extract(voided)
        _golden(f, "vp8")

    def test_garbage_after_magic_is_malformed(self) -> None:
        f = extract(b"\x1a\x45\xdf\xa3" + b"\x00" * 64)
        assert f["malformed"] == 1.0 and f["kind.video"] == 1.0


class TestOtherGeometry:
    @pytest.mark.parametrize(("name", "codec"), [("qcif30.mp4", "h264"), ("qcif30.webm", "vp8")])
    def test_176x144_at_30fps(self, videos: Mapping[str, bytes], name: str, codec: str) -> None:
        f = extract(videos[name])
        assert "malformed" not in f and f[f"codec.{codec}"] == 1.0
        assert (f["width"], f["height"]) == (176.0, 144.0)
        assert f["fps"] == pytest.approx(30.0)
        assert abs(f["duration_s"] - 1.0) <= 1 / 30


class TestFfprobeFallback:
    def test_off_by_default(self, videos: Mapping[str, bytes]) -> None:
        f = extract(videos["mpegts.ts"])
        assert f["kind.video"] == 1.0 and f["malformed"] == 1.0 and "ffprobe" not in f

    def test_used_when_container_parse_fails(self, videos: Mapping[str, bytes]) -> None:
        f = extract(videos["mpegts.ts"], options={"ffprobe": True, "ffprobe_timeout_s": 20})
        assert f["ffprobe"] == 1.0 and "malformed" not in f
        _golden(f, "mpeg2")

    def test_not_used_when_container_parses(self, videos: Mapping[str, bytes]) -> None:
        f = extract(videos["mp4_faststart.mp4"], options={"ffprobe": True})
        assert "ffprobe" not in f

    def test_ffprobe_failure_is_malformed(self) -> None:
        f = extract(b"\x00" * 1000, kind="video", options={"ffprobe": True})
        assert f["malformed"] == 1.0
