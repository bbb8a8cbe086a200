"""Starting a stage from existing weights (``recipe.init``: a vocoder warm start, a diffusion fine-tune), knob
jitter, and half-precision export (``recipe.export_dtypes``), on tiny random models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from sampleforge.bundle import load_state
from sampleforge.errors import UserInputError
from sampleforge.model_config import ModelConfig
from sampleforge.models.vocoder import Vocoder, VocoderConfig
from sampleforge.strict import ConfigError
from sampleforge.train.recipe import DataConfig, RecipeConfig
from sampleforge.train.stage import StageContext
from sampleforge.train.vocoder import warm_start


def _tiny(kind: str, seed: int) -> Vocoder:
    torch.manual_seed(seed)
    voc = Vocoder(VocoderConfig(kind=kind, dim=8, intermediate_dim=16, layers=2, gl_iters=2))
    with torch.no_grad():  # the magnitude rows of a fresh head are zero: make every tensor distinct
        for p in voc.parameters():
            p.normal_()
    return voc


def _save(voc: Vocoder, file: Path) -> Path:
    save_file({k: v.contiguous() for k, v in voc.state_dict().items()}, str(file))
    return file


def test_warm_start_from_istft_copies_backbone_and_magnitude_rows(tmp_path: Path) -> None:
    src = _tiny("istft", 0)
    (tmp_path / "model").mkdir()
    _save(src, tmp_path / "model" / "vocoder.safetensors")
    dst = _tiny("magnitude", 1)
    k = dst.mel.cfg.n_freqs
    assert warm_start(dst, tmp_path / "model") == len(dst.state_dict())  # a model folder works too
    torch.testing.assert_close(dst.blocks[1].pw1.weight, src.blocks[1].pw1.weight)
    torch.testing.assert_close(dst.head.weight, src.head.weight[:k])  # the log-magnitude rows, not the phase
    torch.testing.assert_close(dst.head.bias, src.head.bias[:k])


def test_warm_start_skips_what_does_not_fit(tmp_path: Path) -> None:
    src = Vocoder(VocoderConfig(kind="istft", dim=8, intermediate_dim=16, layers=1))
    dst = _tiny("istft", 1)
    before = dst.blocks[1].pw1.weight.clone()
    copied = warm_start(dst, _save(src, tmp_path / "v.safetensors"))
    assert 0 < copied < len(dst.state_dict())
    torch.testing.assert_close(dst.blocks[0].pw1.weight, src.blocks[0].pw1.weight)
    torch.testing.assert_close(dst.blocks[1].pw1.weight, before)  # no such block in the source: left as it was


def test_warm_start_errors_name_the_problem(tmp_path: Path) -> None:
    dst = _tiny("magnitude", 0)
    with pytest.raises(UserInputError, match="does not exist"):
        warm_start(dst, tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserInputError, match="not a readable"):
        warm_start(dst, tmp_path / "bad.safetensors")
    save_file({"unrelated": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserInputError, match="no tensor"):
        warm_start(dst, tmp_path / "other.safetensors")


def test_half_precision_export_loads_back(tmp_path: Path) -> None:
    voc = _tiny("istft", 0)
    ctx = StageContext(run_dir=tmp_path, model_config=ModelConfig(), data=DataConfig(), recipe=RecipeConfig(), clips=[])
    full = ctx.save_component("vocoder", voc, tmp_path / "full")
    ctx.recipe.export_dtypes = {"vocoder": "float16"}
    half = ctx.save_component("vocoder", voc, tmp_path / "half")
    assert {v.dtype for v in load_file(str(ctx.save_component("unet", voc, tmp_path / "other"))).values()} == {torch.float32}
    assert {v.dtype for v in load_file(str(half)).values()} == {torch.float16}
    assert half.stat().st_size < 0.6 * full.stat().st_size
    back = Vocoder(voc.cfg)
    load_state(back, half)
    assert all(p.dtype == torch.float32 for p in back.parameters())
    torch.testing.assert_close(back.head.weight, voc.head.weight, rtol=1e-3, atol=1e-3)
    assert not torch.equal(back.head.weight, voc.head.weight)  # rounded to half precision on the way


def test_export_dtype_is_checked() -> None:
    assert RecipeConfig(export_dtypes={"vae": "float16"}).export_dtypes == {"vae": "float16"}
    with pytest.raises(ConfigError, match="export_dtypes.vocoder must be one of float32, float16"):
        RecipeConfig(export_dtypes={"vocoder": "int8"})
    with pytest.raises(ConfigError, match="unknown component 'decoder'"):
        RecipeConfig(export_dtypes={"decoder": "float16"})


class _NoAudio(StageContext):
    """A stage context whose training set is two silent clips (no audio files needed)."""

    def dataset(self, augment: bool) -> Any:
        return None

    def batches(self, dataset: Any, batch_size: int = 32, limit: int | None = None) -> Iterator[dict[str, Any]]:
        yield {"wav": torch.zeros(2, 4096)}


def test_vocoder_task_warm_starts_from_the_recipe(tmp_path: Path) -> None:
    from sampleforge.train.vocoder import VocoderTask

    cfg = ModelConfig(vocoder=VocoderConfig(kind="magnitude", dim=8, intermediate_dim=16, layers=2))
    src = _tiny("istft", 0)
    file = _save(src, tmp_path / "src.safetensors")
    ctx = _NoAudio(run_dir=tmp_path, model_config=cfg, data=DataConfig(), clips=[],
                   recipe=RecipeConfig(init={"vocoder": str(file)}))
    task = VocoderTask(ctx)
    torch.testing.assert_close(task.model.head.weight, src.head.weight[: src.mel.cfg.n_freqs])
    ctx.recipe = RecipeConfig(init={"vocoder": str(tmp_path / "missing")})
    with pytest.raises(UserInputError, match="init.vocoder: .*missing"):
        VocoderTask(ctx)


def _diffusion_model(folder: Path) -> tuple[torch.nn.Module, Any]:
    from sampleforge.bundle import load_bundle
    from sampleforge.models.text import KeywordEncoder
    from sampleforge.models.unet import LatentUNet

    bundle = load_bundle(folder)
    torch.manual_seed(1)
    model = torch.nn.ModuleDict({"unet": LatentUNet(bundle.config.unet), "text": KeywordEncoder(bundle.config.text)})
    return model, bundle


def test_diffusion_starts_from_a_model_folder_keeps_its_keywords_and_adds_new_ones(tmp_path: Path) -> None:
    from sampleforge.debug_model import make_debug_bundle
    from sampleforge.text.keywords import Vocabulary
    from sampleforge.train.diffusion import init_vocabulary, start_from

    folder = make_debug_bundle(tmp_path / "m", seed=3)
    model, bundle = _diffusion_model(folder)
    before = model["unet"].state_dict()
    assert not all(torch.equal(v, bundle.unet.state_dict()[k]) for k, v in before.items())
    start_from(model, folder)
    for name in ("unet", "text"):
        own, src = model[name].state_dict(), getattr(bundle, name).state_dict()
        assert all(torch.equal(own[k], src[k]) for k in src)
    # the run's clips name fewer and other words: the folder's keywords (and ids) are kept all the same, and
    # new words take the free rows of the keyword table, most counted first, as far as there is room
    known = bundle.vocab.words[0]
    built = Vocabulary({known: 10, "cowbellish": 3, "lofi": 5}, classes={"lofi": {"kick": 5}})
    size = len(bundle.vocab) + 1
    vocab = init_vocabulary(folder, built, size)
    assert vocab.words == [*bundle.vocab.words, "lofi"] and "cowbellish" not in vocab and len(vocab) == size
    assert all(vocab.id_of(w) == bundle.vocab.id_of(w) for w in bundle.vocab.words)
    assert vocab.counts[known] == bundle.vocab.counts[known] and vocab.counts["lofi"] == 5
    assert vocab.classes["lofi"] == {"kick": 5}
    assert init_vocabulary(folder, built, size + 1).words[-2:] == ["lofi", "cowbellish"]
    assert init_vocabulary(folder, built, len(bundle.vocab)) == bundle.vocab  # a full table: nothing is added
    # the ids survive a save: a saved vocabulary keeps its order, whatever the counts say
    vocab.save(tmp_path / "vocab.json")
    again = Vocabulary.load(tmp_path / "vocab.json")
    assert again == vocab and again.id_of("lofi") == len(bundle.vocab)
    with pytest.raises(UserInputError, match="init.diffusion: .* is not a model folder"):
        init_vocabulary(tmp_path / "nowhere", built, size)
    with pytest.raises(UserInputError, match="init.diffusion: .* is not a model folder"):
        start_from(model, tmp_path / "nowhere")
    (folder / "unet.safetensors").unlink()
    with pytest.raises(UserInputError, match="init.diffusion: .*unet.safetensors"):
        start_from(model, folder)


def test_knob_jitter_moves_set_knobs_within_0_1_and_keeps_unset_ones_unset() -> None:
    from sampleforge.train.diffusion import jitter_knobs

    knobs = torch.full((4000, 2), 0.5)
    knobs[:, 1] = float("nan")
    knobs[:10, 0] = 0.99
    g = torch.Generator().manual_seed(0)
    out = jitter_knobs(knobs, 0.05, g)
    assert torch.isnan(out[:, 1]).all()
    assert out[:, 0].min() >= 0 and out[:, 0].max() <= 1
    assert abs(float(out[10:, 0].std()) - 0.05) < 0.005 and abs(float(out[10:, 0].mean()) - 0.5) < 0.005
    assert jitter_knobs(knobs, 0.0, g) is knobs
    with pytest.raises(ConfigError, match="knob_jitter"):
        RecipeConfig(knob_jitter=0.7)
    with pytest.raises(ConfigError, match="recipe.init: stage 'vae'"):
        RecipeConfig(init={"vae": "x"})


def test_class_prompt_dropout_swaps_whole_rows_for_their_class_words_with_no_knob_set() -> None:
    from sampleforge.train.diffusion import class_prompt_dropout

    n = 4000
    ids = torch.tensor([[5, 7, 9, 0]]).repeat(n, 1)
    class_ids = torch.tensor([[5, 0, 0, 0]]).repeat(n, 1)
    knobs = torch.full((n, 3), 0.25)
    g = torch.Generator().manual_seed(0)
    new_ids, new_knobs = class_prompt_dropout(ids, knobs, class_ids, 0.2, g)
    swapped = (new_ids == class_ids).all(dim=1)
    kept = (new_ids == ids).all(dim=1)
    assert bool((swapped | kept).all()) and abs(float(swapped.float().mean()) - 0.2) < 0.02
    assert torch.isnan(new_knobs[swapped]).all() and (new_knobs[kept] == 0.25).all()  # a whole row, never part
    assert (ids == torch.tensor([5, 7, 9, 0])).all() and (knobs == 0.25).all()  # the inputs are not modified
    synth = class_ids.clone()
    synth[: n // 2] = 0  # rows with no class words (synthesised clips) keep their prompt and knobs
    mixed_ids, mixed_knobs = class_prompt_dropout(ids, knobs, synth, 0.5, g)
    assert (mixed_ids[: n // 2] == ids[: n // 2]).all() and (mixed_knobs[: n // 2] == 0.25).all()
    assert abs(float((mixed_ids[n // 2 :] == class_ids[n // 2 :]).all(dim=1).float().mean()) - 0.5) < 0.03
    same_ids, same_knobs = class_prompt_dropout(ids, knobs, class_ids, 0.0, g)
    assert same_ids is ids and same_knobs is knobs
    with pytest.raises(ConfigError, match="class_prompt_dropout"):
        RecipeConfig(class_prompt_dropout=1.5)


def test_a_decoder_fine_tune_grows_refine_blocks_onto_a_trained_vae(tmp_path: Path) -> None:
    from sampleforge.errors import CheckpointError
    from sampleforge.models.vae import MelVAE, VAEConfig
    from sampleforge.train.vae import load_grown

    small = VAEConfig(channels=[16, 16], latent_channels=4, n_mels=32)
    torch.manual_seed(0)
    trained = MelVAE(small)
    with torch.no_grad():
        for p in trained.parameters():
            p.normal_(0, 0.1)
    file = tmp_path / "vae.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(file))
    grown = MelVAE(VAEConfig(**{**small.__dict__, "refine_blocks": 2}))
    assert load_grown(grown, file) == 2
    z = torch.randn(2, 4, 6)
    torch.testing.assert_close(grown.decode(z), trained.decode(z))  # the new blocks start as the identity
    assert load_grown(trained, file) == 0
    other = MelVAE(VAEConfig(**{**small.__dict__, "latent_channels": 8, "refine_blocks": 1}))
    with pytest.raises(CheckpointError, match="vae.safetensors: key .* has shape"):
        load_grown(other, file)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="bad.safetensors: not a readable safetensors file"):
        load_grown(grown, bad)


def test_a_run_from_a_model_folder_takes_its_vae_once_and_refuses_another(tmp_path: Path) -> None:
    from sampleforge.debug_model import make_debug_bundle
    from sampleforge.train.diffusion import take_init_vae

    folder = make_debug_bundle(tmp_path / "m", seed=3)
    run_model = tmp_path / "run" / "model"
    take_init_vae(run_model, folder)
    assert (run_model / "vae.safetensors").read_bytes() == (folder / "vae.safetensors").read_bytes()
    assert (run_model / "config.json").read_text() == (folder / "config.json").read_text()
    (run_model / "config.json").write_text("{}")  # the run's own config is not overwritten on a resume
    take_init_vae(run_model, folder)
    assert (run_model / "config.json").read_text() == "{}"
    other = make_debug_bundle(tmp_path / "other", seed=4)
    with pytest.raises(UserInputError, match="is not the VAE of .*other.*delete .*run"):
        take_init_vae(run_model, other)
    with pytest.raises(UserInputError, match="init.diffusion: .*nowhere is not a model folder"):
        take_init_vae(run_model, tmp_path / "nowhere")
