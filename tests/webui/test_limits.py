"""The server's cap on an upscale's output size."""

from __future__ import annotations

import pytest

from generator.errors import InputError
from generator.webui.limits import check_upscale_size


def test_an_upscale_over_the_cap_gets_one_sentence() -> None:
    with pytest.raises(InputError) as caught:
        check_upscale_size((3000, 2250), 4)
    assert str(caught.value) == ("the upscaled image would be 12000x9000 (108 megapixels), over this server's limit "
                                 "of 64; upscale a smaller image or choose a lower scale.")
    assert check_upscale_size((4000, 4000), 2) == (8000, 8000)  # exactly 64 megapixels: allowed
    with pytest.raises(InputError, match=r"8000x8002 \(64 megapixels\), over this server's limit of 64;"):
        check_upscale_size((4000, 4001), 2, max_megapixels=64)
    assert check_upscale_size((333, 250), 1.5, max_megapixels=0.1875) == (500, 375)  # rounded as the upscaler does
    with pytest.raises(InputError, match=r"500x375 \(0.2 megapixels\), over this server's limit of 0.18;"):
        check_upscale_size((333, 250), 1.5, max_megapixels=0.18)
    assert check_upscale_size((30000, 30000), 4, max_megapixels=0) == (120000, 120000)  # no cap


def test_the_models_own_factor_counts_when_it_is_larger() -> None:
    assert check_upscale_size((3000, 3000), 2, network_scale=2) == (6000, 6000)
    with pytest.raises(InputError, match="makes a 12000x12000 image first .4x, 144 megapixels"):
        check_upscale_size((3000, 3000), 2, network_scale=4)
