"""golden.shapes: network descriptions without torch, re-exported by golden.models."""

import json
import subprocess
import sys

import pytest

from golden import models, shapes


def _imported_after(modules):
    """The top-level packages in ``sys.modules`` of a fresh interpreter after importing
    ``modules`` (a subprocess: this test process has long imported torch)."""
    code = (f"import sys\nfor m in {list(modules)!r}: __import__(m)\n"
            "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_helper_sees_torch_when_it_is_imported():
    """The check below could not fail if the helper missed imports."""
    assert "torch" in _imported_after(["golden.models"])


@pytest.mark.parametrize("module", ["golden.shapes", "gen.compiler", "gen.tiled_compiler"])
def test_shapes_and_the_compilers_do_not_import_torch(module):
    assert "torch" not in _imported_after([module])


def test_models_re_exports_the_same_functions():
    for name in shapes.__all__:
        assert getattr(models, name) is getattr(shapes, name)


@pytest.mark.parametrize("model", shapes.MODELS)
def test_every_model_describes_plain_data_with_the_spec_keys(model):
    side = 40 if model == "svhn" else 28
    layers = shapes.describe(model, (1, side, side), 10, wbits=4, abits=4)
    json.dumps(layers)
    required = shapes.LayerSpec.__required_keys__
    allowed = required | shapes.LayerSpec.__optional_keys__
    for layer in layers:
        assert required <= layer.keys() <= allowed, layer["name"]


def test_float_baseline_has_no_bit_widths():
    layers = shapes.describe("mlp", (1, 8, 8), 10, wbits=None, abits=None)
    assert shapes.input_bits(layers) is None
    assert all(lay["wbits"] is lay["in_bits"] is lay["out_bits"] is None for lay in layers)


def test_conv_shape_undoes_the_pool():
    conv0 = shapes.describe_lenet((1, 28, 28), 10, wbits=4, abits=4)[0]
    assert conv0["out_shape"] == [6, 14, 14] and shapes.conv_shape(conv0) == [6, 28, 28]


def test_address_skip_pads_and_differentiates_like_f_pad():
    """The torch-free zero channels give F.pad's values and gradient (option A, stride 2)."""
    import torch
    from torch.nn import functional as F

    spec = shapes.describe_resnet20((3, 32, 32), 10, wbits=4, abits=4)[8]
    assert spec.get("skip_stride") == 2 and spec.get("skip_channel_offset") == 8
    src = torch.randn(2, 16, 32, 32, requires_grad=True)
    got = shapes.address_skip(spec, src)
    want = F.pad(src[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))
    assert torch.equal(got, want)
    weights = torch.randn(want.shape)
    (grad_got,) = torch.autograd.grad((got * weights).sum(), src)
    (grad_want,) = torch.autograd.grad((want * weights).sum(), src)
    assert torch.equal(grad_got, grad_want)
