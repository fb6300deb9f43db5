"""Real sound for the audio benchmarks, rendered here (none of it is committed):

- spoken keywords: Debian's `flite` speaking the ten Speech Commands words in five English
  voices (awb, rms and slt trained on CMU ARCTIC recordings; kal and kal16 diphone voices), at
  three speaking rates and four pitches: `keywords(folder)` writes folder/<voice>/<word>/*.wav.
"""
from __future__ import annotations

import shutil
import subprocess
from itertools import product
from pathlib import Path

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
VOICES = ("awb", "rms", "slt", "kal", "kal16")
RATES = (0.8, 1.0, 1.25)        # flite's duration_stretch
PITCHES = (90, 120, 160, 210)   # flite's int_f0_target_mean, Hz


def keywords(folder: Path) -> Path | None:
    """Render the keywords (600 clips) into folder/<voice>/<word>/; None without flite."""
    if shutil.which("flite") is None:
        return None
    done = folder / ".complete"
    if done.exists():
        return folder
    for voice, word, rate, pitch in product(VOICES, WORDS, RATES, PITCHES):
        out = folder / voice / word / f"{voice}_{rate}_{pitch}.wav"
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["flite", "-voice", voice, "-t", word, "-o", str(out), "--setf", f"duration_stretch={rate}",
                        "--setf", f"int_f0_target_mean={pitch}"], check=True, capture_output=True)
    done.touch()
    return folder


SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian's fluid-soundfont-gm
KEYS = (40, 48, 55, 60, 64, 67, 72, 79)   # MIDI notes from E2 to G5
VELOCITIES = (70, 110)
RATE = 16000


def instruments(folder: Path) -> Path | None:
    """Render each of the 128 General MIDI programs of FluidR3_GM (real recorded instrument
    samples) at 8 pitches and 2 velocities, 1 s each (0.8 s held, then the release), into
    folder/<program>/<key>_<velocity>.wav; None without the sound font or tinysoundfont."""
    try:
        import tinysoundfont
    except ImportError:
        return None
    if not SOUNDFONT.is_file():
        return None
    done = folder / ".complete"
    if done.exists():
        return folder
    import numpy as np
    import soundfile

    synth = tinysoundfont.Synth(samplerate=RATE)
    font = synth.sfload(str(SOUNDFONT))
    for program in range(128):
        out = folder / f"{program:03d}"
        out.mkdir(parents=True, exist_ok=True)
        synth.program_select(0, font, 0, program)
        for key, velocity in product(KEYS, VELOCITIES):
            synth.noteon(0, key, velocity)
            held = np.frombuffer(synth.generate(int(0.8 * RATE)), dtype=np.float32).copy()
            synth.noteoff(0, key)
            release = np.frombuffer(synth.generate(int(0.2 * RATE)), dtype=np.float32).copy()
            synth.sounds_off()
            synth.generate(RATE // 10)  # let the voice die out before the next note
            stereo = np.concatenate([held, release]).reshape(-1, 2)
            soundfile.write(out / f"{key}_{velocity}.wav", stereo, RATE)
    done.touch()
    return folder
