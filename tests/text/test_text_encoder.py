"""KeywordEncoder: shapes, masked pooling, the learned null, dropout, errors, strict config."""

from __future__ import annotations

import pytest
import torch

from sampleforge.errors import UserInputError
from sampleforge.models.text import KeywordEncoder, TextConfig, keyword_dropout
from sampleforge.strict import ConfigError
from sampleforge.text.keywords import Vocabulary


def _encoder() -> KeywordEncoder:
    torch.manual_seed(0)
    return KeywordEncoder(TextConfig.debug()).eval()


def test_shapes_and_vocab_round_trip() -> None:
    vocab = Vocabulary.build([["kick", "808"], ["snare"], ["kick", "punchy"]])
    enc = _encoder()
    ids, dropped = vocab.encode_batch(["punchy 808 kick", "snare", "zzz"], max_tokens=enc.cfg.max_tokens)
    out = enc(ids)
    assert out.shape == (3, enc.cfg.cond_dim) and dropped == [[], [], ["zzz"]]
    assert enc.null(5).shape == (5, enc.cfg.cond_dim)


@torch.no_grad()
def test_padding_and_order_do_not_matter() -> None:
    enc = _encoder()
    a = enc(torch.tensor([[3, 5, 0, 0]]))
    b = enc(torch.tensor([[0, 5, 0, 3]]))
    c = enc(torch.tensor([[3, 5, 5, 3]]))  # mean pooling: duplicates keep the mean
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    assert float((a - enc(torch.tensor([[3, 0, 0, 0]]))).abs().max()) > 1e-4


def test_all_padding_row_is_the_learned_null() -> None:
    enc = _encoder()
    out = enc(torch.tensor([[0, 0, 0, 0], [2, 0, 0, 0]]))
    torch.testing.assert_close(out[0], enc.null(1)[0])
    assert not torch.allclose(out[1], out[0])
    assert isinstance(enc.null_cond, torch.nn.Parameter) and "null_cond" in enc.state_dict()
    out[0].sum().backward()  # the null is learned: it receives gradients
    assert enc.null_cond.grad is not None and float(enc.null_cond.grad.abs().sum()) > 0


def test_keyword_dropout_is_seeded_and_has_the_right_rates() -> None:
    ids = torch.randint(1, 10, (4000, 4), generator=torch.Generator().manual_seed(0))
    a = keyword_dropout(ids, 0.2, torch.Generator().manual_seed(1))
    b = KeywordEncoder.keyword_dropout(ids, 0.2, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(
        a, keyword_dropout(ids, 0.2, torch.Generator().manual_seed(2))
    )
    assert bool(((a == 0) | (a == ids)).all())  # only replaced by padding
    whole = float((a == 0).all(dim=1).float().mean())  # p (whole prompt) + p^4 (every word)
    assert whole == pytest.approx(0.2 + 0.8 * 0.2**4, abs=0.02)
    words = float((a == 0).float().mean())  # 1 - (1 - p)^2
    assert words == pytest.approx(1 - 0.8**2, abs=0.02)
    assert torch.equal(keyword_dropout(ids, 0.0), ids) and bool((keyword_dropout(ids, 1.0) == 0).all())
    with pytest.raises(UserInputError, match=r"\[0, 1\]"):
        keyword_dropout(ids, 1.5)


def test_bad_ids_raise_clear_errors() -> None:
    enc = _encoder()
    with pytest.raises(UserInputError, match=r"keyword id 16 is outside 0..15 .*vocab.json"):
        enc(torch.tensor([[1, 16, 0, 0]]))
    with pytest.raises(UserInputError, match="outside"):
        enc(torch.tensor([[-1, 0, 0, 0]]))
    with pytest.raises(UserInputError, match=r"\(B, L\)"):
        enc(torch.tensor([1, 2]))
    with pytest.raises(UserInputError, match="integers"):
        enc(torch.tensor([[1.0, 2.0]]))


def test_config_is_strict() -> None:
    cfg = TextConfig.from_dict({"vocab_size": 40, "cond_dim": 32})
    assert cfg.vocab_size == 40 and cfg.embed_dim == 64 and TextConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown key 'vocab_path'"):
        TextConfig.from_dict({"vocab_path": "x.json"})
    with pytest.raises(ConfigError, match="integer"):
        TextConfig.from_dict({"cond_dim": 1.5})
    with pytest.raises(ConfigError, match="vocab_size"):
        TextConfig(vocab_size=1)
