"""Shapes and basic behaviour of the inference networks (VAE, U-Net, vocoder)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sampleforge.audio.mel import MelConfig, MelSpectrogram
from sampleforge.models.unet import LatentUNet, UNetConfig
from sampleforge.models.vae import MelVAE, VAEConfig
from sampleforge.models.vocoder import Vocoder, VocoderConfig
from sampleforge.strict import ConfigError

SMALL_VAE = VAEConfig(channels=[16, 16, 16], latent_channels=4, kernel_size=3)


@pytest.mark.parametrize("frames", [173, 44, 9])
def test_vae_shapes_any_length(frames: int) -> None:
    vae = MelVAE(SMALL_VAE)
    mel = torch.randn(2, 128, frames) - 5
    z = vae.encode(mel)
    assert z.shape == (2, 4, -(-frames // 8)) == (2, *SMALL_VAE.latent_shape(frames))
    assert vae.decode(z, frames).shape == (2, 128, frames)


def test_vae_decode_respects_scale_factor() -> None:
    torch.manual_seed(0)
    vae = MelVAE(SMALL_VAE)
    mel = torch.randn(1, 128, 173) - 5
    z1 = vae.encode(mel)
    vae.cfg.scale_factor = 2.0
    z2 = vae.encode(mel)
    torch.testing.assert_close(z2, 2 * z1)
    torch.testing.assert_close(vae.decode(z2, 173), vae.decode(z1 * 2, 173))


def test_vae_output_never_below_floor() -> None:
    vae = MelVAE(SMALL_VAE)
    out = vae.decode(torch.randn(3, 4, 22) * 50, 173)
    assert float(out.detach().min()) >= SMALL_VAE.log_floor - 1e-5


@pytest.mark.parametrize("width", [22, 11, 5])
def test_unet_shapes_and_zero_init(width: int) -> None:
    cfg = UNetConfig(in_channels=4, channels=[16, 32], cond_dim=8, time_dim=16, attention_heads=2)
    net = LatentUNet(cfg)
    x = torch.randn(3, 4, width)
    out = net(x, torch.tensor([0.0, 500.0, 999.0]), torch.randn(3, 8))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # output conv starts at zero: an untrained net predicts 0


@pytest.mark.parametrize("width", [44, 43, 7])
def test_unet_patch_folds_frames_and_unfolds_them_in_order(width: int) -> None:
    """patch 2: the net sees (C*2, W/2); with every layer an identity-like map the output must put each frame
    back where it came from (a wrong unfold order would swap neighbouring frames)."""
    cfg = UNetConfig(in_channels=4, channels=[16, 32], cond_dim=8, time_dim=16, attention_heads=2, patch=2)
    net = LatentUNet(cfg)
    assert net.conv_in.in_channels == 8 and net.conv_out.out_channels == 8
    x = torch.randn(2, 4, width)
    t, c = torch.tensor([3.0, 600.0]), torch.randn(2, 8)
    assert net(x, t, c).shape == x.shape
    # route the folded input straight to the output: conv_out(...) := folded input, via a hook on conv_out
    seen: dict[str, torch.Tensor] = {}
    net.conv_in.register_forward_hook(lambda m, args, out: seen.__setitem__("folded", args[0]))
    net.conv_out.register_forward_hook(lambda m, args, out: seen["folded"])
    torch.testing.assert_close(net(x, t, c), x)
    width_even = width + width % 2
    assert seen["folded"].shape[-1] % 2 == 0 and seen["folded"].shape[-1] >= width_even // 2
    with pytest.raises(Exception, match="patch"):
        UNetConfig(patch=0)


def test_unet_uses_condition_and_time() -> None:
    torch.manual_seed(0)
    cfg = UNetConfig(in_channels=4, channels=[16, 32], cond_dim=8, time_dim=16, attention_heads=2)
    net = LatentUNet(cfg)
    for p in net.parameters():  # leave the zero init so outputs depend on the inputs
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(1, 4, 22)
    c = torch.randn(1, 8)
    base = net(x, torch.tensor([10.0]), c)
    assert not torch.allclose(base, net(x, torch.tensor([900.0]), c))
    assert not torch.allclose(base, net(x, torch.tensor([10.0]), torch.randn(1, 8)))


def test_vocoder_magnitude_head_starts_at_pseudo_inverse() -> None:
    voc = Vocoder(VocoderConfig(dim=16, intermediate_dim=32, layers=1, gl_iters=2))
    mel = MelSpectrogram()(torch.randn(1, 22050) * 0.1)
    torch.testing.assert_close(voc.log_magnitude(mel), voc.baseline_log_magnitude(mel).clamp(max=8.0))
    wav = voc(mel, length=22050)
    assert wav.shape == (1, 22050) and torch.isfinite(wav).all()


@pytest.mark.parametrize("phase", ["direct", "integrated"])
@pytest.mark.parametrize("refine", [0, 2])
def test_vocoder_istft_head_shapes(phase: str, refine: int) -> None:
    voc = Vocoder(VocoderConfig(kind="istft", dim=16, intermediate_dim=32, layers=1, phase=phase, refine_iters=refine),
                  MelConfig())
    mel = torch.randn(2, 128, 20) - 5
    assert voc.spectrum(mel).shape == (2, 1025, 20) and voc.spectrum(mel).is_complex()
    wav = voc(mel)
    assert wav.shape == (2, 19 * 512) and torch.isfinite(wav).all()
    assert voc(mel, length=9800).shape == (2, 9800)  # 20 frames: 9800 // 512 + 1


def test_vocoder_istft_head_starts_at_the_mel_inversion() -> None:
    """With ``baseline`` the untrained head's magnitude is the NNLS mel inversion, exactly 0 where it is silent."""
    voc = Vocoder(VocoderConfig(kind="istft", dim=16, intermediate_dim=32, layers=1))
    wav = torch.cat([torch.randn(1, 11025) * 0.1, torch.zeros(1, 11025)], dim=1)
    mel = MelSpectrogram()(wav)
    base = voc.baseline_log_magnitude(mel)
    mag = voc.spectrum(mel).abs()
    silent = base <= MelConfig().log_floor_value + 1e-6
    assert silent[..., -5:].all() and (~silent).any()
    assert (mag[silent] == 0).all()
    torch.testing.assert_close(mag[~silent], base.exp()[~silent])


def test_vocoder_integrated_phase_is_a_steady_partial_when_untrained() -> None:
    """``phase="integrated"``: with a zero phase output, each bin advances by its centre frequency per frame, so
    the STFT of the output keeps much more of the magnitude than with a constant phase (not all of it: the mel
    inversion spreads the partial over neighbouring bins, which then advance at their own centre frequencies)."""
    mc = MelConfig()
    k = 100  # a partial at the centre of bin 100 (2153 Hz)
    t = torch.arange(44100) / mc.sample_rate
    wav = (0.5 * torch.cos(2 * torch.pi * k * mc.sample_rate / mc.n_fft * t))[None]
    mel = MelSpectrogram(mc)(wav)
    errors = {}
    for phase in ("direct", "integrated"):
        voc = Vocoder(VocoderConfig(kind="istft", dim=16, intermediate_dim=32, layers=1, phase=phase), mc)
        with torch.no_grad():
            voc.head.weight.zero_()
            voc.head.bias.zero_()
            spec = voc.spectrum(mel)
            out = voc.mel.magnitude(voc.istft(spec, wav.shape[-1]))
        errors[phase] = float((out - spec.abs())[:, :, 4:-4].norm() / spec.abs()[:, :, 4:-4].norm())
    assert errors["integrated"] < 0.6 * errors["direct"], errors  # measured 0.48 vs 0.94


def test_a_refining_vocoder_runs_its_network_only_where_griffin_lim_hears_the_clip() -> None:
    """A clip that sounds for 0.2 s of 2: the network runs over its sounding frames and its receptive field only,
    and the waveform is what the network over the whole clip gives (to -80 dB of the peak) up to where Griffin-Lim alone
    would stop; after that, silence. A clip that sounds throughout runs over every frame."""
    noise = torch.Generator().manual_seed(0)
    mc = MelConfig()
    short = torch.cat([torch.randn(1, 8820, generator=noise) * 0.3 * torch.linspace(1, 0, 8820), torch.zeros(1, 79380)], dim=1)
    mel = MelSpectrogram(mc)(short)
    voc = Vocoder(VocoderConfig(kind="istft", dim=16, intermediate_dim=32, layers=2, refine_iters=4,
                                refine_start="onset"), mc)
    seen: list[int] = []
    voc.embed.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[-1]))
    with torch.no_grad():
        torch.nn.init.normal_(voc.head.weight, std=0.02)  # a magnitude that is not the mel inversion's
        wav = voc(mel, length=88200)
        whole = voc.refiner.from_magnitude(voc.spectrum(mel).abs(), mel, 88200)
    frames = mel.shape[-1]
    keep = voc.sounding_frames(voc.baseline_log_magnitude(mel))
    assert seen[0] == keep < frames // 2 and keep >= 18 + 4 + voc.receptive_frames  # 8820 samples: frames 0-17
    audible = (keep - voc.receptive_frames) * mc.hop_length
    torch.testing.assert_close(wav[:, :audible], whole[:, :audible], atol=1e-4 * float(whole.abs().max()), rtol=0)
    assert (wav[:, audible:] == 0).all()
    seen.clear()
    loud = MelSpectrogram(mc)(torch.randn(1, 88200, generator=noise) * 0.1)
    with torch.no_grad():
        voc(loud, length=88200)
    assert seen == [loud.shape[-1]]


def test_istft_vocoder_as_a_magnitude_model_for_griffin_lim() -> None:
    """``refine_start`` "onset": Griffin-Lim starts from its own onset start, so the network's phase does not
    matter and its magnitude does; "network" starts from the predicted spectrum, phase included. The mel
    iterations follow the input mel: they change the result."""
    mc = MelConfig()
    mel = MelSpectrogram(mc)(torch.randn(1, 22050) * 0.1)
    k = mc.n_freqs

    def synth(start: str, mel_iters: int = 0, phase_bias: float = 0.0, mag_bias: float = 0.0) -> torch.Tensor:
        cfg = VocoderConfig(kind="istft", dim=16, intermediate_dim=32, layers=1, refine_iters=4, refine_start=start,
                            refine_mel_iters=mel_iters)
        voc = Vocoder(cfg, mc)
        with torch.no_grad():
            voc.head.weight.zero_()
            voc.head.bias.zero_()
            voc.head.bias[k:] = phase_bias
            voc.head.bias[:k] = mag_bias
            return voc(mel, length=22050)

    onset = synth("onset")
    assert onset.shape == (1, 22050) and torch.isfinite(onset).all()
    torch.testing.assert_close(synth("onset", phase_bias=1.0), onset)
    assert (synth("onset", mag_bias=0.5) - onset).abs().max() > 1e-3
    assert (synth("network", phase_bias=1.0) - synth("network")).abs().max() > 1e-3
    assert (synth("onset", mel_iters=2) - onset).abs().max() > 1e-3
    described = Vocoder(VocoderConfig(kind="istft", dim=16, intermediate_dim=32, layers=1, refine_iters=4,
                                      refine_start="onset", refine_mel_iters=2), mc).describe()
    assert described.startswith("istft network (0.") and described.endswith(
        "M parameters), the magnitude of Griffin-Lim: 4 iterations from the onset start, the last 2 matching the mel")
    assert Vocoder(VocoderConfig(kind="istft", dim=16, intermediate_dim=32, layers=1), mc).describe().endswith(
        "M parameters)")
    with pytest.raises(ConfigError, match="refine_start"):
        VocoderConfig(kind="istft", refine_iters=4, refine_start="pink")
    with pytest.raises(ConfigError, match="refine_mel_iters"):
        VocoderConfig(kind="istft", refine_iters=4, refine_mel_iters=5)


def test_attack_vocoder_runs_only_the_attack_through_the_network() -> None:
    """"attack": the phase of the first attack_frames frames depends only on the first attack_frames +
    receptive_frames mel frames (so the rest is never computed), and Griffin-Lim starts from it there."""
    voc = Vocoder(VocoderConfig(kind="attack", dim=16, intermediate_dim=32, layers=2, kernel_size=5, attack_frames=3,
                                gl_iters=0), MelConfig())
    with torch.no_grad():
        voc.head.weight.normal_(std=0.1)  # untrained, the head adds nothing to its prior
        mel = MelSpectrogram()(torch.randn(1, 44100) * 0.1)
        phase = voc.attack_phase(mel)
        assert voc.receptive_frames == 6 and phase.shape == (1, 1025, 3)
        reach = mel.clone()
        reach[..., 3 + 6 :] = -5.0  # beyond the receptive field: no effect
        assert torch.equal(voc.attack_phase(reach), phase)
        reach[..., 3 + 5] = -5.0  # inside it: an effect
        assert (voc.attack_phase(reach) - phase).abs().max() > 0  # small at the edge of the field, but there
        wav = voc(mel, length=44100)  # no Griffin-Lim iteration: one inverse STFT of the start
        spec = voc.mel.magnitude(wav)
        assert wav.shape == (1, 44100) and torch.isfinite(wav).all() and spec.shape[-1] == mel.shape[-1]
        short = voc(mel[..., :2], length=512)  # a clip shorter than the attack
        assert short.shape == (1, 512) and torch.isfinite(short).all()
    with pytest.raises(ConfigError, match="attack_frames"):
        VocoderConfig(kind="attack", attack_frames=0)


def test_attack_prior_is_the_phase_of_a_sound_starting_at_the_delay() -> None:
    """The prior of frame m: a minimum-phase sound starting ``attack_delay`` samples into the clip. For an impulse
    there (flat magnitude: minimum phase 0) it is the impulse's true phase in every frame whose window holds it;
    and an untrained attack vocoder's phase is its prior."""
    mc = MelConfig()
    voc = Vocoder(VocoderConfig(kind="attack", dim=16, intermediate_dim=32, layers=1, attack_frames=3, attack_delay=90), mc)
    wav = torch.zeros(1, 8192)
    wav[0, 90] = 1.0
    window = torch.hann_window(mc.n_fft)
    spec = torch.stft(wav, mc.n_fft, mc.hop_length, window=window, center=True, pad_mode="constant", return_complex=True)
    prior = voc.attack_prior(torch.zeros(1, mc.n_freqs, 3))  # flat log-magnitude
    for m in range(3):
        err = torch.angle(torch.exp(1j * (prior[0, :, m] - spec[0, :, m].angle())))  # wrapped to (-pi, pi]
        assert err.abs().max() < 1e-3, (m, float(err.abs().max()))
    mel = MelSpectrogram(mc)(torch.randn(1, 22050, generator=torch.Generator().manual_seed(0)) * 0.1)
    base = voc.baseline_log_magnitude(mel)
    torch.testing.assert_close(voc.attack_phase(mel, base), voc.attack_prior(base[..., :3]))
    # without the magnitude, the mel inversion of the first frames alone (its floor scales with their loudest, so
    # the quietest bins differ): the phase of the loud bins is the same (magnitude-weighted, wrapped; 0.001 rad
    # here, up to 0.002 over 20 inputs, where single quiet bins differ by up to 0.4)
    err = torch.angle(torch.exp(1j * (voc.attack_phase(mel) - voc.attack_prior(base[..., :3])))).abs()
    weight = base[..., :3].exp()
    assert float((err * weight).sum().detach() / weight.sum().detach()) < 0.01


def test_vocoder_rejects_unknown_kind_and_phase() -> None:
    with pytest.raises(ValueError, match="kind"):
        Vocoder(VocoderConfig(kind="hifigan"))
    with pytest.raises(ValueError, match="phase"):
        VocoderConfig(kind="istft", phase="pghi")


def test_vocoder_config_without_kind_is_the_magnitude_head() -> None:
    """Configs written before the "istft" head keep loading as the "magnitude" vocoder they were trained as."""
    from sampleforge.strict import from_dict

    cfg = from_dict(VocoderConfig, {"dim": 16, "intermediate_dim": 32, "layers": 1, "gl_iters": 2})
    assert cfg.kind == "magnitude"
    assert Vocoder(cfg).head.out_features == MelConfig().n_freqs


@pytest.mark.parametrize(("cin", "cout", "kernel", "padding", "stride", "width"), [
    (64, 128, 3, 1, 1, 22), (128, 128, 3, 1, 2, 22), (128, 128, 3, 1, 2, 21), (192, 576, 1, 0, 1, 11),
    (32, 16, 5, 2, 1, 9), (16, 8, 3, 1, 1, 100),
])  # fmt: skip
def test_unet_conv_matches_torch_conv(cin: int, cout: int, kernel: int, padding: int, stride: int, width: int) -> None:
    """The U-Net's matrix-product convolution gives what nn.Conv1d gives, for 1x1, 3-tap, strided, odd and long
    inputs, at inference and in training (where it is nn.Conv1d itself)."""
    from sampleforge.models.unet import FastConv1d

    torch.manual_seed(0)
    conv = FastConv1d(cin, cout, kernel, padding=padding, stride=stride)
    x = torch.randn(2, cin, width)
    ref = nn.Conv1d.forward(conv, x)
    assert torch.allclose(conv.train()(x), ref)
    with torch.inference_mode():
        out = conv.eval()(x)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5)
    assert isinstance(conv, nn.Conv1d) and set(conv.state_dict()) == {"weight", "bias"}
