"""devices: seeded draws for tensors on another device than the generator's."""

from __future__ import annotations

import torch

from sampleforge.devices import integers, normal, uniform


def test_draws_land_on_the_asked_device_with_the_generators_numbers() -> None:
    """The numbers are the generator's own (as drawn where it lives); only where they end up changes. The "meta"
    device stands in for a GPU batch with a CPU generator."""
    for draw, plain in ((uniform, torch.rand), (normal, torch.randn)):
        ref = plain((2, 3), generator=torch.Generator().manual_seed(7))
        torch.testing.assert_close(draw((2, 3), torch.Generator().manual_seed(7), torch.device("cpu")), ref)
        assert draw((2, 3), torch.Generator().manual_seed(7), torch.device("meta")).device.type == "meta"
    ref = torch.randint(0, 10, (4,), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(integers(10, (4,), torch.Generator().manual_seed(7), torch.device("cpu")), ref)
    assert integers(10, (4,), torch.Generator().manual_seed(7), torch.device("meta")).device.type == "meta"
    assert uniform(5, None, torch.device("meta")).shape == (5,)  # no generator: torch's global one, on the device
