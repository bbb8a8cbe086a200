"""`sampleforge train vae|diffusion|vocoder` end to end on a few dozen real drum clips, debug config."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from sampleforge.bundle import load_bundle
from sampleforge.cli import main
from sampleforge.data.corpus import HYDROGEN_DIRS
from sampleforge.debug_model import make_debug_bundle
from sampleforge.errors import UserInputError
from sampleforge.pipeline import Generator
from sampleforge.train.commands import EXIT_STOPPED

REPO = Path(__file__).resolve().parents[2]
KITS = ("Millo-Drums_v.1", "HardElectro1")  # 17 + 17 one-shots


@pytest.fixture(scope="module")
def real_kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = [d / k for d in HYDROGEN_DIRS for k in KITS if (d / k).is_dir()]
    if len(src) < len(KITS):
        pytest.skip("Hydrogen drum kits not installed (`make data`)")
    root = tmp_path_factory.mktemp("kits")
    for kit in src:
        shutil.copytree(kit, root / kit.name)
    return root


def test_train_all_stages_then_generate(real_kits: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = [
        "--data",
        str(real_kits),
        "--config",
        str(REPO / "configs" / "debug.json"),
        "--out",
        str(run),
        "--cache",
        str(tmp_path / "cache"),
        "--no-progress",
    ]
    assert main(["train", "vae", *common]) == 0
    assert (run / "vae" / "loss.csv").is_file() and (run / "vae" / "loss.png").is_file()
    assert list((run / "vae" / "previews").glob("*/reconstruction_0.wav"))
    assert main(["train", "diffusion", *common]) == 0
    assert main(["train", "vocoder", *common]) == 0
    model = run / "model"
    for stage, names in (("vae", ["vae"]), ("diffusion", ["text", "unet"]), ("vocoder", ["vocoder"])):
        exported = sorted(f.stem for f in (run / stage / "export").glob("*.safetensors"))
        assert exported == names  # each task writes its export where the loop asks; the run installs it
        for name in names:
            assert (model / f"{name}.safetensors").read_bytes() == (run / stage / "export" / f"{name}.safetensors").read_bytes()
    bundle = load_bundle(model)
    assert bundle.config.vae.scale_factor != 1.0  # measured by the VAE export, kept by later stages
    assert "kick" in bundle.vocab
    audio = Generator(bundle, device="cpu").generate("kick", steps=2, seed=0)
    assert audio.shape == (1, 88200) and torch.isfinite(audio).all()
    # a second run without --resume must refuse to overwrite; with --resume it continues (already done)
    assert main(["train", "vae", *common]) == 2
    assert main(["train", "vae", *common, "--resume", "--max-steps", "6"]) == 0
    assert int((run / "vae" / "loss.csv").read_text().splitlines()[-1].split(",")[0]) == 6
    # stopped by the time limit before its last step: a distinct status, so that a script chains finished stages only
    assert main(["train", "vae", *common, "--resume", "--max-steps", "9", "--max-minutes", "0.0001"]) == EXIT_STOPPED
    assert main(["train", "vae", *common, "--resume", "--max-steps", "9"]) == 0
    assert int((run / "vae" / "loss.csv").read_text().splitlines()[-1].split(",")[0]) == 9


def test_a_fine_tune_starts_from_a_model_folder_with_its_vae_and_keywords(real_kits: Path, tmp_path: Path) -> None:
    import json

    start = make_debug_bundle(tmp_path / "start", seed=5, vocab_words=["kick", "snare", "hat", "808"])
    recipe = tmp_path / "tune.json"  # the debug recipe, extended: only what the second run changes
    recipe.write_text(json.dumps({"extends": str(REPO / "configs" / "debug.json"),
                                  "train": {"diffusion": {"max_steps": 2}},
                                  "recipe": {"stages": ["diffusion"], "init": {"diffusion": str(start)}}}))
    run = tmp_path / "tune"
    args = ["train", "diffusion", "--data", str(real_kits), "--config", str(recipe), "--out", str(run),
            "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert main(args) == 0
    # trained on the start's latents, with the start's keyword ids, and the clips' other words after them
    assert (run / "model" / "vae.safetensors").read_bytes() == (start / "vae.safetensors").read_bytes()
    bundle, first = load_bundle(run / "model"), load_bundle(start)
    assert bundle.vocab.words[:len(first.vocab.words)] == first.vocab.words
    new = bundle.vocab.words[len(first.vocab.words):]
    assert new and not set(new) & set(first.vocab.words)
    assert bundle.vocab.encode(new[0])[1] == [] and bundle.config.text.vocab_size == first.config.text.vocab_size
    assert bundle.unet is not None and bundle.text is not None
    audio = Generator(bundle, device="cpu").generate("808 kick", steps=2, seed=0)
    assert audio.shape == (1, 88200) and torch.isfinite(audio).all()
    # the start rebuilt with another VAE since: the resume refuses it, one line, nothing overwritten
    shutil.rmtree(start)
    make_debug_bundle(start, seed=6, vocab_words=["kick", "snare", "hat", "808"])
    before = (run / "model" / "vae.safetensors").read_bytes()
    assert main([*args, "--resume", "--max-steps", "3"]) == 2
    assert (run / "model" / "vae.safetensors").read_bytes() == before


def test_vae_improves_over_untrained(real_kits: Path, tmp_path: Path) -> None:
    from sampleforge.train.loop import TrainConfig, train
    from sampleforge.train.recipe import load_recipe, training_clips
    from sampleforge.train.stage import StageContext
    from sampleforge.train.vae import VAETask

    recipe = load_recipe(REPO / "configs" / "debug.json")
    clips, held = training_clips([real_kits], recipe.data, tmp_path)
    ctx = StageContext(
        run_dir=tmp_path / "run",
        model_config=recipe.model,
        data=recipe.data,
        recipe=recipe.recipe,
        clips=clips,
        held_out=held,
        cache_dir=tmp_path / "cache",
    )
    task = VAETask(ctx)
    mels = task.dataset().data[:16]

    def recon_error() -> float:
        with torch.no_grad():
            vae = task.model
            return float((vae.decode(vae.encode(mels), mels.shape[-1]) - mels).abs().mean())

    before = recon_error()
    train(
        task,
        TrainConfig(max_steps=30, batch_size=8, lr=3e-3, checkpoint_minutes=0),
        tmp_path / "run" / "vae",
        progress=False,
    )
    after = recon_error()
    assert after < 0.7 * before, (before, after)


def test_low_band_weight_weighs_the_bands_below_150_hz(real_kits: Path, tmp_path: Path) -> None:
    """The weighted loss exceeds the plain one by exactly the weight times the L1 of the bands below
    LOW_BAND_HZ; the decoder fine-tune takes the VAE's train settings unless given its own."""
    import json

    from sampleforge.audio.mel import mel_centers
    from sampleforge.train.recipe import load_recipe, training_clips
    from sampleforge.train.stage import StageContext
    from sampleforge.train.vae import LOW_BAND_HZ, VAETask

    raw = json.loads((REPO / "configs" / "debug.json").read_text())
    raw["recipe"]["delta_weight"] = 0.0
    config = tmp_path / "r.json"
    config.write_text(json.dumps(raw))
    recipe = load_recipe(config)
    assert recipe.train["vae-decoder"] == recipe.train["vae"]
    raw["train"]["vae-decoder"] = {**raw["train"].get("vae", {}), "max_steps": 7}
    config.write_text(json.dumps(raw))
    assert load_recipe(config).train["vae-decoder"].max_steps == 7
    data = recipe.data
    data.augment = False
    clips, held = training_clips([real_kits], data, tmp_path)

    def loss_terms(weight: float) -> tuple[float, float]:
        recipe.recipe.low_band_weight = weight
        ctx = StageContext(run_dir=tmp_path / "run", model_config=recipe.model, data=data, recipe=recipe.recipe,
                           clips=clips, held_out=held, cache_dir=tmp_path / "cache")
        torch.manual_seed(0)
        task = VAETask(ctx)
        batch = task.collate([task.dataset()[i] for i in range(4)])
        _, logs = task.loss(task.model, batch, torch.Generator().manual_seed(1))
        with torch.no_grad():  # the L1 of the low bands alone, from the same draw
            vae, mel = task.model, batch["mel"]
            mean, logvar = vae.posterior(mel)
            z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
            rec = vae.decode_unscaled(z, mel.shape[-1], clamp=False).clamp(min=vae.cfg.log_floor)
            low = torch.from_numpy(mel_centers(recipe.model.mel) < LOW_BAND_HZ)
            err = ((rec - mel).abs() / vae.cfg.mel_std)[:, low].sum() / mel.numel()
        return float(logs["l1"]), float(err)

    plain, low_err = loss_terms(0.0)
    weighted, _ = loss_terms(3.0)
    assert low_err > 0
    assert weighted == pytest.approx(plain + 3.0 * low_err, rel=1e-4)


def test_diffusion_learns_timbre_knobs(real_kits: Path, tmp_path: Path) -> None:
    """A config naming knobs: the stage measures every clip (by the recipe's feature version), writes the
    per-class table, and the exported text encoder takes knobs."""
    import json

    from sampleforge.timbre import KNOBS

    recipe = json.loads((REPO / "configs" / "debug.json").read_text())
    recipe["model"]["text"]["knobs"] = ["decay", "brightness"]
    recipe["model"]["vocoder"] = None
    recipe.setdefault("recipe", {})["timbre_features"] = 2
    recipe["recipe"]["class_prompt_dropout"] = 0.3  # its class-words table is built and used
    config = tmp_path / "knobs.json"
    config.write_text(json.dumps(recipe))
    run = tmp_path / "run"
    common = ["--data", str(real_kits), "--config", str(config), "--out", str(run),
              "--cache", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
    assert main(["train", "vae", *common]) == 0
    assert main(["train", "diffusion", *common]) == 0
    table = json.loads((run / "model" / "timbre.json").read_text())
    assert table["features"] == 2  # the recipe's definitions, named for the eval
    cached = json.loads((run / "diffusion" / "timbre.json").read_text())
    assert cached["features"] == 2 and len(cached["clips"]) > 0
    for words in table["words"].values():  # what words mean per class: knobs that lean, never the middle
        assert all(abs(v - 0.5) >= 0.15 and 0 <= v <= 1 for lean in words.values() for v in lean.values())
    kick = table["classes"]["kick"]
    assert set(kick) == set(KNOBS) and kick["decay"][0] <= kick["decay"][1] <= kick["decay"][2]
    bundle = load_bundle(run / "model")
    assert bundle.config.text.knobs == ["decay", "brightness"]
    gen = Generator(bundle, device="cpu")
    a = gen.condition(["kick"], {"decay": 0.1})[0]
    b = gen.condition(["kick"], {"decay": 0.9})[0]
    assert not torch.allclose(a, b)
    audio = gen.generate("long kick", steps=2, seed=0)
    assert audio.shape == (1, 88200) and torch.isfinite(audio).all()


def test_a_flow_model_trains_and_samples(real_kits: Path, tmp_path: Path) -> None:
    import json

    recipe = json.loads((REPO / "configs" / "debug.json").read_text())
    recipe["model"]["diffusion"].update(prediction="flow", sampling_schedule="uniform")
    config = tmp_path / "flow.json"
    config.write_text(json.dumps(recipe))
    run = tmp_path / "run"
    common = ["--data", str(real_kits), "--config", str(config), "--out", str(run), "--cache", str(tmp_path / "cache"),
              "--no-progress", "--max-steps", "2"]
    make_debug_bundle(run / "model")  # a random VAE stands in for the VAE stage (this test is about diffusion)
    assert main(["train", "diffusion", *common]) == 0
    with open(run / "diffusion" / "loss.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 2 and all(0 < v < 10 for v in losses)  # velocity of unit-scale latents: about 2
    gen = Generator(load_bundle(run / "model"), device="cpu")
    assert gen.samplers == ("flow_euler", "flow_heun")
    audio = gen.generate("kick", steps=2, seed=0)
    assert audio.shape == (1, 88200) and torch.isfinite(audio).all()


def _resynthesis_distance(task: Any, wav: torch.Tensor, measure: Callable[[torch.Tensor, torch.Tensor], float]) -> float:
    """``measure`` between clips (B, T) and the task's vocoder's re-synthesis of them from their own log-mel."""
    with torch.no_grad():
        voc = task.model
        return measure(wav, voc(voc.mel(wav), length=wav.shape[-1]))


def test_istft_vocoder_improves_over_untrained(real_kits: Path, tmp_path: Path) -> None:
    """The "istft" head (debug size) learns: the MR-STFT distance of re-synthesised clips to the originals falls."""
    from sampleforge.eval.metrics import mrstft_distance
    from sampleforge.train.loop import TrainConfig, train
    from sampleforge.train.recipe import load_recipe, training_clips
    from sampleforge.train.stage import StageContext
    from sampleforge.train.vocoder import VocoderTask

    recipe = load_recipe(REPO / "configs" / "debug.json")
    assert recipe.model.vocoder is not None and recipe.model.vocoder.kind == "istft"
    clips, held = training_clips([real_kits], recipe.data, tmp_path)
    ctx = StageContext(run_dir=tmp_path / "run", model_config=recipe.model, data=recipe.data, recipe=recipe.recipe,
                       clips=clips, held_out=held, cache_dir=tmp_path / "cache")
    task = VocoderTask(ctx)
    wav = task.dataset().data[:8, : 31 * 512]

    def distance() -> float:
        return _resynthesis_distance(task, wav, mrstft_distance)

    before = distance()
    train(task, TrainConfig(max_steps=40, batch_size=4, lr=3e-3, checkpoint_minutes=0), tmp_path / "run" / "vocoder",
          progress=False)
    after = distance()
    assert after < 0.99 * before, (before, after)  # measured 1.18 -> 1.13 and 1.165 -> 1.141 (the debug head is 16 wide)


def test_istft_vocoder_can_train_by_the_multi_resolution_log_mel(real_kits: Path, tmp_path: Path) -> None:
    """recipe.vocoder_mr_mel_weight adds w x the eval's mr_logmel_l1 of the crop to the loss, logs it, and lowers
    that measure on the clips it trains on; a vocoder that does not make the waveform refuses it."""
    import dataclasses

    from sampleforge.eval.metrics import mr_logmel_l1
    from sampleforge.train.loop import TrainConfig, train
    from sampleforge.train.recipe import load_recipe, training_clips
    from sampleforge.train.stage import StageContext
    from sampleforge.train.vocoder import VocoderTask

    recipe = load_recipe(REPO / "configs" / "debug.json")
    clips, held = training_clips([real_kits], recipe.data, tmp_path)

    def task(weight: float, model: object = recipe.model) -> VocoderTask:
        torch.manual_seed(0)
        settings = dataclasses.replace(recipe.recipe, vocoder_segment_frames=16, vocoder_mr_mel_weight=weight)
        return VocoderTask(StageContext(run_dir=tmp_path / "run", model_config=model, data=recipe.data,  # type: ignore[arg-type]
                                        recipe=settings, clips=clips, held_out=held, cache_dir=tmp_path / "cache"))

    plain, weighted = task(0.0), task(5.0)
    batch = {"wav": plain.dataset().data[:4]}
    with torch.no_grad():
        loss0, m0 = plain.loss(plain.model, batch, torch.Generator().manual_seed(3))
        loss5, m5 = weighted.loss(weighted.model, batch, torch.Generator().manual_seed(3))
    assert "mr_mel" not in m0 and float(m5["mr_mel"]) > 0
    assert float(loss5 - loss0) == pytest.approx(5.0 * float(m5["mr_mel"]), rel=1e-4)

    wav = weighted.dataset().data[:8, : 31 * 512]

    def distance() -> float:
        return _resynthesis_distance(weighted, wav, mr_logmel_l1)

    before = distance()
    train(weighted, TrainConfig(max_steps=30, batch_size=4, lr=3e-3, checkpoint_minutes=0, log_every=1),
          tmp_path / "run" / "vocoder", progress=False)
    assert distance() < 0.95 * before, before
    with open(tmp_path / "run" / "vocoder" / "loss.csv") as f:
        assert all(float(r["mr_mel"]) > 0 for r in csv.DictReader(f))
    attack = dataclasses.replace(recipe.model, vocoder=dataclasses.replace(recipe.model.vocoder, kind="attack"))
    with pytest.raises(UserInputError, match='vocoder_mr_mel_weight needs a vocoder .*kind "istft"'):
        task(1.0, attack)


def test_attack_vocoder_learns_the_attack_phase(real_kits: Path, tmp_path: Path) -> None:
    """The "attack" head (debug size, over the onset prior) lowers its magnitude-weighted phase distance on the
    clips it trains on; its dataset holds only the starts of the clips (and augmented copies when asked)."""
    import dataclasses

    from sampleforge.models.vocoder import VocoderConfig
    from sampleforge.train.loop import TrainConfig, train
    from sampleforge.train.recipe import load_recipe, training_clips
    from sampleforge.train.stage import StageContext
    from sampleforge.train.vocoder import VocoderTask

    recipe = load_recipe(REPO / "configs" / "debug.json")
    model = dataclasses.replace(recipe.model, vocoder=VocoderConfig(kind="attack", dim=32, intermediate_dim=64, layers=1,
                                                                      attack_frames=3, gl_iters=2))
    clips, held = training_clips([real_kits], recipe.data, tmp_path)
    settings = dataclasses.replace(recipe.recipe, vocoder_segment_frames=8, vocoder_variants=1)
    ctx = StageContext(run_dir=tmp_path / "run", model_config=model, data=recipe.data, recipe=settings,
                       clips=clips, held_out=held, cache_dir=tmp_path / "cache")
    task = VocoderTask(ctx)
    data = task.dataset().data
    frames = 3 + task.model.receptive_frames  # the attack and the context the network needs: more than 8
    assert data.shape == (2 * len(clips), (frames - 1) * 512)  # each clip and one augmented copy, their starts
    batch = {"wav": data[:16]}

    def loss() -> float:
        with torch.no_grad():
            return float(task.loss(task.model, batch, torch.Generator().manual_seed(0))[0])

    before = loss()
    train(task, TrainConfig(max_steps=40, batch_size=8, lr=3e-3, checkpoint_minutes=0), tmp_path / "run" / "vocoder",
          progress=False)
    assert loss() < 0.9 * before, before


def test_istft_vocoder_trains_against_a_discriminator_and_resumes_exactly(real_kits: Path, tmp_path: Path) -> None:
    """With recipe.vocoder_adversarial_weight set, each step also trains the discriminator; its weights and
    optimizer go into the checkpoint, so 3 steps, a stop and 3 more give what 6 straight steps give."""
    import dataclasses

    from safetensors.torch import load_file

    from sampleforge.train.loop import TrainConfig, train
    from sampleforge.train.recipe import load_recipe, training_clips
    from sampleforge.train.stage import StageContext
    from sampleforge.train.vocoder import VocoderTask

    recipe = load_recipe(REPO / "configs" / "debug.json")
    settings = dataclasses.replace(recipe.recipe, vocoder_segment_frames=8, vocoder_adversarial_weight=0.5,
                                   vocoder_feature_matching_weight=1.0)
    clips, held = training_clips([real_kits], recipe.data, tmp_path)

    def task() -> VocoderTask:
        torch.manual_seed(0)  # the same initial weights for both runs (a resumed run takes the checkpoint's)
        ctx = StageContext(run_dir=tmp_path / "run", model_config=recipe.model, data=recipe.data, recipe=settings,
                           clips=clips, held_out=held, cache_dir=tmp_path / "cache")
        return VocoderTask(ctx)

    def cfg(steps: int) -> TrainConfig:
        return TrainConfig(max_steps=steps, batch_size=4, lr=1e-3, checkpoint_minutes=0, log_every=1)

    straight = tmp_path / "straight"
    train(task(), cfg(6), straight, progress=False)
    split = tmp_path / "split"
    train(task(), cfg(3), split, progress=False)
    train(task(), cfg(6), split, resume=True, progress=False)
    a, b = (load_file(str(d / "checkpoint" / "state.safetensors")) for d in (straight, split))
    assert a.keys() == b.keys() and any(k.startswith("task.model.discriminators.") for k in a)
    assert any(k.startswith("task.optimizer.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with open(straight / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(float(r["disc"]) > 0 and float(r["adv"]) > 0 for r in rows)
    assert any(float(r["fm"]) > 0 for r in rows)  # 0 on a batch of silent crops (a clip's padded tail)

    no_gan = dataclasses.replace(settings, vocoder_adversarial_weight=0.0, vocoder_feature_matching_weight=0.0)
    attack = dataclasses.replace(recipe.model, vocoder=dataclasses.replace(recipe.model.vocoder, kind="attack"))
    ctx = StageContext(run_dir=tmp_path / "run", model_config=attack, data=recipe.data, recipe=settings,
                       clips=clips, held_out=held, cache_dir=tmp_path / "cache")
    with pytest.raises(UserInputError, match='kind "istft"'):
        VocoderTask(ctx)
    ctx = StageContext(run_dir=tmp_path / "run", model_config=recipe.model, data=recipe.data, recipe=no_gan,
                       clips=clips, held_out=held, cache_dir=tmp_path / "cache")
    assert VocoderTask(ctx).extra_state() is None
