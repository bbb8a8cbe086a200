"""Writing a kit over a folder that holds files already: an earlier kit's presets and kit.json are replaced, the
user's own files by those names never (refused before generating); and the pieces as the help spells them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import sampleforge
from sampleforge.cli import main
from sampleforge.errors import ParamError, UserInputError
from sampleforge.kit.build import Kit, build_kit
from sampleforge.kit.pieces import parse_pieces
from sampleforge.kit.writers import KIT_FILES, write_kit
from sampleforge.params import GenerationParams
from sampleforge.pipeline import Generator

# a user's own file by each kit file's name: notes, a Hydrogen kit of theirs, presets they wrote
USERS = {
    "kit.json": '{"name": "my kit", "author": "me", "samples": []}\n',
    "drumkit.xml": '<?xml version="1.0" encoding="UTF-8"?>\n<drumkit_info xmlns="http://www.hydrogen-music.org/'
                   'drumkit">\n  <name>My Kit</name>\n  <author>me</author>\n  <info>recorded in my garage</info>\n'
                   '</drumkit_info>\n',
    "kit.sfz": "// my kit\n<region> sample=kick.wav\n",
    "kit.dspreset": '<?xml version="1.0" encoding="UTF-8"?>\n<DecentSampler minVersion="1.0.0">\n  <!-- mine -->\n'
                    "</DecentSampler>\n",
    "gm_map.csv": "note,name\n36,my kick\n",
}


@pytest.fixture(scope="module")
def gen(debug_model: Path) -> Generator:
    return Generator.from_pretrained(debug_model, device="cpu")


@pytest.fixture(scope="module")
def kit(gen: Generator) -> Kit:
    return build_kit(gen, prompt="dusty", pieces="kick,snare", seed=1, steps=1)


def test_pieces_are_separated_by_spaces_or_commas(gen: Generator) -> None:
    """As the setting's help says ("kick snare" was one unknown piece 'kick snare')."""
    for text in ("kick snare", "kick,snare", " kick ,  snare\t", "kick, snare"):
        assert parse_pieces(text) == ["kick", "snare"], text
    assert GenerationParams(pieces="kick snare clap").pieces == "kick,snare,clap"
    assert build_kit(gen, pieces="kick snare", seed=1, steps=1).pieces == ["kick", "snare"]
    with pytest.raises(UserInputError, match=r"^pieces: snare named twice"):
        parse_pieces("snare kick snare")


def test_the_files_a_kit_writes_are_recognised_as_its(kit: Kit, tmp_path: Path) -> None:
    from sampleforge.kit.writers import kit_file_written_here

    odd = dataclasses.replace(kit, name="a\nb -- c <&>", prompt="dusty---808\r\nkit")
    for k, folder in ((kit, tmp_path / "plain"), (odd, tmp_path / "odd")):
        write_kit(k, folder)
        assert all(kit_file_written_here(folder / name) for name in KIT_FILES), folder
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, text in USERS.items():
        (mine / name).write_text(text)
        assert not kit_file_written_here(mine / name), name
    (mine / "kit.json").write_bytes(b"\xff\xfe not text")
    assert not kit_file_written_here(mine / "kit.json")


@pytest.mark.parametrize("name", KIT_FILES)
def test_overwrite_keeps_the_users_own_kit_files(debug_model: Path, kit: Kit, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """make_kit(overwrite=True) over a folder with the user's own <name>: a one-line ParamError naming out_dir
    before the model loads, the file kept and nothing written (it was replaced); write_kit refuses it too. An
    earlier kit's files there are replaced."""
    folder = tmp_path / "kit"
    folder.mkdir()
    (folder / name).write_text(USERS[name])
    needle = f"out_dir: {folder / name} exists and was not written by sampleforge; not replaced"
    with monkeypatch.context() as m:
        m.setattr("sampleforge.workflow._generator", lambda *a, **k: pytest.fail("the model loaded"))
        with pytest.raises(ParamError, match="^" + re.escape(needle)) as caught:
            sampleforge.make_kit(folder, model=debug_model, pieces="kick", steps=1, overwrite=True)
    assert "\n" not in str(caught.value)
    with pytest.raises(ParamError, match="^" + re.escape(needle)):
        write_kit(kit, folder, overwrite=True)
    assert [p.name for p in folder.iterdir()] == [name] and (folder / name).read_text() == USERS[name]
    (folder / name).unlink()
    write_kit(kit, folder)
    sampleforge.make_kit(folder, model=debug_model, pieces="kick", steps=1, overwrite=True)  # an earlier kit's
    assert sorted(p.name for p in folder.iterdir()) == sorted([*KIT_FILES, "kick.wav"])


def test_kit_overwrite_on_the_command_line_keeps_a_users_hydrogen_kit(debug_model: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "hydrogen"
    folder.mkdir()
    (folder / "drumkit.xml").write_text(USERS["drumkit.xml"])
    rc = main(["kit", "--model", str(debug_model), "--pieces", "kick", "snare", "--steps", "1", "--out-dir",
               str(folder), "--overwrite", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--out-dir: {folder / 'drumkit.xml'} exists and was not written by sampleforge" in err
    assert [p.name for p in folder.iterdir()] == ["drumkit.xml"]
    assert (folder / "drumkit.xml").read_text() == USERS["drumkit.xml"]
