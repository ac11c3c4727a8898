"""Clip pack, templates and composer: decode the WAVs produced and find the clips in them."""

from __future__ import annotations

import array
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from drivers.codecs.audio_frames import read_wav, write_wav
from hall_controller.config import ConfigError, parse_config
from hall_controller.voice.composer import Composer
from hall_controller.voice.pack import VoicePackError, builtin_pack_dir, load_pack
from hall_controller.voice.template import TemplateError, VoiceTemplate, chinese_numeral, number_tokens
from tests.conftest import sample_data

PACK = load_pack()


def samples(pcm: bytes) -> array.array:
    out = array.array("h")
    out.frombytes(pcm)
    return out


def spoken_tokens(pcm: bytes, clips: dict[str, bytes]) -> list[str]:
    """Walk the PCM: every non-silent stretch must be one whole clip of the pack, byte for byte."""
    wave = samples(pcm)
    known = [(token, samples(clip)) for token, clip in clips.items()]
    leads = {token: next(i for i, v in enumerate(s) if v) for token, s in known}
    found: list[str] = []
    i = 0
    while i < len(wave):
        if wave[i] == 0:
            i += 1
            continue
        for token, clip in sorted(known, key=lambda k: -len(k[1])):
            start = i - leads[token]
            if start >= 0 and wave[start:start + len(clip)] == clip:
                found.append(token)
                i = start + len(clip)
                break
        else:
            raise AssertionError(f"sound at {i / 22050:.3f} s is not a clip of the pack")
    return found


def rms_dbfs(pcm: bytes) -> float:
    values = samples(pcm)
    return 20 * math.log10(math.sqrt(sum(v * v for v in values) / len(values)) / 32768)


def test_shipped_pack_is_one_format_normalised_without_dc() -> None:
    manifest = json.loads((builtin_pack_dir() / "manifest.json").read_text(encoding="utf-8"))
    assert "espeak-ng" in manifest["voice"]["engine"] and "GPL" in manifest["voice"]["licence"]
    assert manifest["voice"]["command"].startswith("espeak-ng -v cmn-latn-pinyin")
    for token in ["请", "号", "到", "窗口", "办理", "chime", *"零一二三四五六七八九十", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"]:
        info = read_wav((builtin_pack_dir() / manifest["tokens"][token]["file"]).read_bytes())
        assert (info.sample_rate, info.channels, info.sample_width) == (22050, 1, 2), token
        assert 0.15 < info.duration < 1.3, (token, info.duration)
        values = samples(info.frames)
        assert abs(sum(values) / len(values)) < 0.001 * 32768, f"{token}: DC offset"
        level = rms_dbfs(info.frames)
        assert (-21 < level < -19) if token != "chime" else (-24 < level < -22), (token, level)
        # trimmed: the first and last 20 ms are not a run of silence
        edge = int(0.02 * 22050)
        assert any(abs(v) > 300 for v in values[:edge * 2]) and any(abs(v) > 300 for v in values[-edge * 2:]), token


@pytest.mark.parametrize(("template", "number", "window", "style", "text", "tokens"), [
    ("请{number}号到{window}号窗口办理", "A001", 3, "chinese", "请A001号到3号窗口办理",
     ["请", "A", "零", "零", "一", "号", "到", "三", "号", "窗口", "办理"]),
    ("请{number}号到{window}号窗口办理", "F120", 12, "chinese", "请F120号到12号窗口办理",
     ["请", "F", "一", "二", "零", "号", "到", "十", "二", "号", "窗口", "办理"]),
    ("请{number}号到{window}号窗口办理", "B007", 12, "digits", "请B007号到12号窗口办理",
     ["请", "B", "零", "零", "七", "号", "到", "一", "二", "号", "窗口", "办理"]),
    ("{number}号，请到{window}号窗口", "Z999", 105, "chinese", "Z999号，请到105号窗口",
     ["Z", "九", "九", "九", "号", "请", "到", "一", "百", "零", "五", "号", "窗口"]),
    ("请{number}号前往{window}号窗口", "Q010", 20, "chinese", "请Q010号前往20号窗口",
     ["请", "Q", "零", "一", "零", "号", "前往", "二", "十", "号", "窗口"]),
    ("请{number}号到{window}号窗口办理。请稍候", "W0008", 8, "chinese", "请W0008号到8号窗口办理。请稍候",
     ["请", "W", "零", "零", "零", "八", "号", "到", "八", "号", "窗口", "办理", "请稍候"]),
])
def test_composed_wav_decodes_to_the_token_sequence(template: str, number: str, window: int, style: str,
                                                    text: str, tokens: list[str]) -> None:
    composer = Composer(PACK, VoiceTemplate(template, frozenset(PACK.clips), style))
    for repeat in (1, 2):
        composed = composer.compose(number, window, repeat)
        info = read_wav(composed.wav)
        assert (info.sample_rate, info.channels, info.sample_width) == (22050, 1, 2)
        assert info.duration == pytest.approx(composed.duration)
        expected = ["chime", *tokens * repeat]
        assert composed.text == text and composed.tokens == expected
        assert spoken_tokens(info.frames, PACK.clips) == expected
        speech = sum(len(PACK.clips[t]) for t in expected) / 2 / 22050
        assert speech < info.duration < speech + 0.35 + 0.12 * len(expected) + 0.8 * repeat
        assert rms_dbfs(info.frames) > -30  # not silence


def test_composed_without_chime_starts_with_speech() -> None:
    composer = Composer(PACK, VoiceTemplate("{number}号", frozenset(PACK.clips)))
    composed = composer.compose("C5", None, 1, chime=False)
    assert spoken_tokens(read_wav(composed.wav).frames, PACK.clips) == ["C", "五", "号"]


@pytest.mark.parametrize(("n", "text"), [(1, "一"), (2, "二"), (10, "十"), (11, "十一"), (20, "二十"), (21, "二十一"),
                                         (100, "一百"), (101, "一百零一"), (110, "一百一十"), (999, "九百九十九")])
def test_chinese_numerals(n: int, text: str) -> None:
    assert chinese_numeral(n) == text


def test_number_tokens_and_bad_input() -> None:
    assert number_tokens("a10") == ["A", "一", "零"]
    for bad in ("", "A-01", "Ａ01"):
        with pytest.raises(TemplateError):
            number_tokens(bad)
    with pytest.raises(TemplateError):
        chinese_numeral(0)


@pytest.mark.parametrize(("template", "message"), [
    ("请{number}号到{counter}号", "{counter}"),
    ("请到{window}号窗口", "{number}"),
    ("请{number}号到{window}号柜台", "柜"),
    ("请{number号", "花括号"),
])
def test_bad_templates_are_refused_with_a_reason(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("}", r"\}")):
        VoiceTemplate(template, frozenset(PACK.clips))


def _config(voice: dict) -> dict:
    data = sample_data()
    data["voice"] = voice
    return data


def test_config_voice_section_defaults_and_errors(tmp_path: Path) -> None:
    config = parse_config(sample_data(), "sample.yaml")
    assert config.voice.template == "请{number}号到{window}号窗口办理" and config.voice.repeat == 2
    with pytest.raises(ConfigError) as err:
        parse_config(_config({"repeat": 0, "template": "请{number}号到{window}号柜台", "loud": True,
                              "max_wait_seconds": 60, "drop_after_seconds": 30}), "hall.yaml", tmp_path)
    fields = [f for f, _ in err.value.problems]
    assert {"voice.repeat", "voice.template", "voice.loud", "voice.drop_after_seconds"} <= set(fields)


def _site_pack(tmp_path: Path, drop: tuple[str, ...] = ()) -> Path:
    folder = tmp_path / "site-voice"
    shutil.copytree(builtin_pack_dir(), folder)
    (folder / "manifest.json").unlink()  # recordings under the shipped file names, no manifest
    for name in drop:
        (folder / name).unlink()
    return folder


def test_site_pack_missing_tokens_is_a_clear_config_error(tmp_path: Path) -> None:
    _site_pack(tmp_path, drop=("hao.wav", "letter_C.wav", "digit_7.wav"))
    with pytest.raises(ConfigError) as err:
        parse_config(_config({"pack": "site-voice"}), "hall.yaml", tmp_path)
    (field, message), = [p for p in err.value.problems if p[0].startswith("voice")]
    assert field == "voice.pack"
    assert "缺少 3 个语音片段" in message and "号（hao.wav）" in message and "C（letter_C.wav）" in message
    assert "七（digit_7.wav）" in message
    # a letter no service uses may be missing
    _site_pack(tmp_path / "b", drop=("letter_Z.wav",))
    assert parse_config(_config({"pack": "b/site-voice"}), "hall.yaml", tmp_path).voice.pack


def test_site_pack_with_mixed_formats_or_broken_files_is_refused(tmp_path: Path) -> None:
    folder = _site_pack(tmp_path)
    (folder / "qing.wav").write_bytes(write_wav(bytes(44100 * 2), 44100))
    (folder / "dao.wav").write_bytes(b"this is not audio")
    with pytest.raises(ConfigError) as err:
        parse_config(_config({"pack": str(folder)}), "hall.yaml", tmp_path)
    text = str(err.value)
    assert "dao.wav（到）不是可播放的 PCM WAV 文件" in text and "片段格式不一致" in text and "44100 Hz" in text
    with pytest.raises(VoicePackError, match="文件夹不存在"):
        load_pack(tmp_path / "nowhere")


def test_site_pack_recordings_replace_the_shipped_clips(tmp_path: Path) -> None:
    folder = _site_pack(tmp_path)
    tone = array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / 22050)) or 1 for i in range(6000)))
    (folder / "qing.wav").write_bytes(write_wav(tone.tobytes(), 22050))
    config = parse_config(_config({"pack": "site-voice"}), "hall.yaml", tmp_path)
    pack = load_pack(config.voice.pack)
    assert pack.clips["请"] == tone.tobytes() and pack.clips["号"] == PACK.clips["号"]
    composed = Composer(pack, VoiceTemplate(config.voice.template, frozenset(pack.clips))).compose("A001", 3)
    assert spoken_tokens(read_wav(composed.wav).frames, pack.clips)[:3] == ["chime", "请", "A"]


def test_sample_config_voice_section_round_trips() -> None:
    data = sample_data()
    assert yaml.safe_load(yaml.safe_dump(data))["voice"]["template"] == "请{number}号到{window}号窗口办理"
