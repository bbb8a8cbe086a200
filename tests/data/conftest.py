"""Tiny drum folders built in tmp_path: a layered Hydrogen kit with conflicts and broken files, an
old-format kit, and a plain folder with a kit.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 44100


def hit(seed: int, seconds: float = 0.12, sr: int = SR, delay: float = 0.0) -> np.ndarray:
    """A decaying noise burst (a stand-in drum hit) with optional leading silence."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    x = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.03 * sr))
    x = 0.5 * x / np.max(np.abs(x))
    return np.concatenate([np.zeros(int(delay * sr)), x]).astype(np.float32)


LAYERED_XML = """<?xml version="1.0" encoding="UTF-8"?>
<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">
 <name>Tiny Kit</name>
 <author>Test Author</author>
 <license>CC0</license>
 <instrumentList>
  <instrument><id>0</id><name>Kick</name>
   <layer><filename>BD_01.wav</filename><min>0</min><max>0.5</max></layer>
   <layer><filename>BD_02.wav</filename><min>0.5</min><max>1</max></layer>
  </instrument>
  <instrument><id>1</id><name>Hi Hat Opened</name>
   <layer><filename>HH2_01.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>2</id><name>Kick 2</name>
   <layer><filename>tom_low_dist.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>3</id><name>Pedal HH</name>
   <layer><filename>hihat-open-1.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>4</id><name>Crash Left</name>
   <layer><filename>CB_01.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>5</id><name>Snare</name>
   <layer><filename>SN_corrupt.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>6</id><name>Snare 2</name>
   <layer><filename>SN_missing.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>7</id><name>Guitar Strum</name>
   <layer><filename>strum_C.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>8</id><name>17</name>
   <layer><filename>emptySample.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>9</id><name>Kick Copy</name>
   <layer><filename>BD_01.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>10</id><name>Ride Long</name>
   <layer><filename>RD_long.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>11</id><name>Clap</name>
   <layer><filename>clap_silent.wav</filename><min>0</min><max>1</max></layer></instrument>
  <instrument><id>12</id><name>Sample: x_03.wav</name>
   <layer><filename>x_03.wav</filename><min>0</min><max>1</max></layer></instrument>
 </instrumentList>
</drumkit_info>
"""

OLD_XML = """<?xml version="1.0"?>
<drumkit_info>
 <name>Old Kit</name>
 <author>Old Author</author>
 <instrumentList>
  <instrument><id>0</id><filename>k.flac</filename><name>Kick 808</name></instrument>
  <instrument><id>1</id><filename>s.flac</filename><name>Snare Rimshot</name></instrument>
 </instrumentList>
</drumkit_info>
"""


@pytest.fixture
def kits_dir(tmp_path: Path) -> Path:
    """tmp/kits/{TinyKit (layered), OldKit (old format)} and tmp/kits/plain (a plain folder with kit.json)."""
    root = tmp_path / "kits"
    tiny = root / "TinyKit"
    tiny.mkdir(parents=True)
    (tiny / "drumkit.xml").write_text(LAYERED_XML, encoding="utf-8")
    for i, fn in enumerate(
        [
            "BD_01.wav",
            "BD_02.wav",
            "HH2_01.wav",
            "tom_low_dist.wav",
            "hihat-open-1.wav",
            "CB_01.wav",
            "strum_C.wav",
            "emptySample.wav",
            "extra_unused.wav",
            "x_03.wav",
        ]
    ):
        sf.write(tiny / fn, hit(i, delay=0.01 * (i % 3)), SR, subtype="PCM_16")
    (tiny / "SN_corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    sf.write(tiny / "RD_long.wav", np.full(21 * 1000, 0.1, np.float32), 1000)  # 21 s at 1 kHz
    sf.write(tiny / "clap_silent.wav", np.zeros(4410, np.float32), SR)
    old = root / "OldKit"
    old.mkdir()
    (old / "drumkit.xml").write_text(OLD_XML, encoding="utf-8")
    sf.write(old / "k.flac", hit(20), SR)
    sf.write(old / "s.flac", np.stack([hit(21), hit(22)], axis=1), 48000)  # stereo, 48 kHz
    plain = root / "plain"
    (plain / "Kicks" / "808").mkdir(parents=True)
    (plain / "Hats").mkdir()
    (plain / "Guitar").mkdir()
    (plain / "misc").mkdir()
    (plain / "kit.json").write_text('{"name": "MyPlain", "author": "me", "licence": "CC0"}')
    sf.write(plain / "Kicks" / "808" / "hard_01.wav", hit(30), SR)
    sf.write(plain / "Hats" / "open_01.aiff", hit(31), SR, format="AIFF")
    sf.write(plain / "Hats" / "hh_02.wav", hit(32), SR)
    sf.write(plain / "Guitar" / "chord_a.wav", hit(33), SR)
    sf.write(plain / "misc" / "thing.wav", hit(34), SR)
    return root
