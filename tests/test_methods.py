"""The invariants every tuning method must keep, checked on tiny nets (CPU, no network, no data)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import ftn
from ftn.methods.base import ExportNotSupported, TunableLayer
from ftn.methods.ftn import FilterTransition

# (method, options): every method and every variant that changes code paths.
CASES = [
    ("ftn", {}),
    ("ftn", {"groups": 4}),
    ("ftn", {"groups": 16}),
    ("ftn", {"depth": 3}),
    ("ftn", {"spatial": True}),
    ("dni", {}),
    ("adafm", {"kernel_size": 1}),
    ("adafm", {"kernel_size": 3}),
    ("adafm", {"kernel_size": 5}),
    ("cfsnet", {}),
    ("dynamic_net", {}),
]
IDS = [m + "".join(f"-{k}{v}" for k, v in o.items()) for m, o in CASES]


class TinyBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class TinyNet(nn.Module):
    """A small residual net with a PReLU and a norm, so DNI has non-conv tensors to interpolate."""

    block_pattern = r"blocks\.\d+"

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.Sequential(TinyBlock(c), TinyBlock(c))
        self.norm = nn.GroupNorm(2, c)
        self.act = nn.PReLU(c)
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.act(self.norm(self.blocks(self.head(x)))))


class OddConvNet(nn.Module):
    """Convs with groups, stride, dilation, no bias, 1x1, reflect padding and a non-divisible width."""

    block_pattern = r"mid"

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 12, 3, padding=1, bias=False)
        self.b = nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=3)
        self.mid = nn.Conv2d(12, 12, 3, padding=2, dilation=2, padding_mode="reflect")
        self.c = nn.Conv2d(12, 6, 1)
        self.up = nn.Upsample(scale_factor=2)
        self.d = nn.Conv2d(6, 3, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d(self.up(torch.relu(self.c(torch.relu(self.mid(self.b(self.a(x))))))))


def make(method: str, options: dict, net_cls: type = TinyNet, seed: int = 0) -> tuple[nn.Module, ftn.TunableModel]:
    torch.manual_seed(seed)
    base = net_cls().eval()
    reference = copy.deepcopy(base)
    return reference, ftn.attach(base, method, **options).eval()


def perturb_tuner(model: ftn.TunableModel, scale: float = 0.05, seed: int = 1) -> None:
    """Move the tuner away from its identity start, as stage 2 would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


def image(b: int = 2, h: int = 16, w: int = 20, seed: int = 3) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method,options", CASES, ids=IDS)
def test_identity_at_initialisation(method: str, options: dict) -> None:
    reference, model = make(method, options)
    x = image()
    expected = reference(x)
    for alpha in (0.0, 0.3, 1.0):
        torch.testing.assert_close(model(x, alpha=alpha), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("groups,depth,spatial", [(1, 2, False), (4, 2, False), (16, 2, False), (1, 3, False), (1, 2, True)])
def test_ftn_is_exactly_the_identity_at_start(groups: int, depth: int, spatial: bool) -> None:
    kernel = torch.randn(64, 32, 3, 3)
    transition = FilterTransition(64, groups=groups, depth=depth, spatial=spatial)
    assert torch.equal(transition(kernel), kernel)


def test_ftn_gradcheck() -> None:
    transition = FilterTransition(8, groups=2).double()
    perturb = {n: p for n, p in transition.named_parameters()}
    with torch.no_grad():
        for p in perturb.values():
            p.add_(0.1 * torch.randn_like(p))
    kernel = torch.randn(8, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(transition, (kernel,))


@pytest.mark.parametrize("method,options", CASES, ids=IDS)
def test_alpha_zero_reproduces_the_base_exactly(method: str, options: dict) -> None:
    reference, model = make(method, options)
    perturb_tuner(model)
    x = image()
    assert torch.equal(model(x, alpha=0.0), reference(x))
    assert not torch.allclose(model(x, alpha=1.0), reference(x), atol=1e-4), "tuner has no effect"


@pytest.mark.parametrize("method,options", CASES, ids=IDS)
def test_export_equals_the_tunable_model(method: str, options: dict) -> None:
    reference, model = make(method, options)
    perturb_tuner(model)
    x = image()
    if not model.capabilities.exact_export:
        with pytest.raises(ExportNotSupported, match="no plain base network"):
            model.export(0.5)
        return
    for alpha in (0.0, 0.35, 1.0):
        plain = model.export(alpha)
        assert not any(isinstance(m, TunableLayer) for m in plain.modules())
        assert type(plain) is TinyNet
        assert plain.state_dict().keys() == reference.state_dict().keys()
        torch.testing.assert_close(plain(x), model(x, alpha=alpha), rtol=1e-5, atol=1e-5)
    assert model.current_alpha == 0.0, "export must not move the model's own alpha"


@pytest.mark.parametrize("method,options", CASES, ids=IDS)
def test_constant_map_equals_scalar(method: str, options: dict) -> None:
    _, model = make(method, options)
    perturb_tuner(model)
    x = image()
    for alpha in (0.0, 0.4, 1.0):
        by_map = model(x, alpha=torch.full((2, 1, 16, 20), alpha))
        torch.testing.assert_close(by_map, model(x, alpha=alpha), rtol=1e-5, atol=1e-5)
    # A (1, 1, H, W) map applies to every image; a map of another resolution is resized.
    torch.testing.assert_close(model(x, alpha=torch.full((1, 1, 7, 9), 0.4)), model(x, alpha=0.4), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method,options", CASES, ids=IDS)
def test_per_sample_alpha_equals_a_loop(method: str, options: dict) -> None:
    _, model = make(method, options)
    perturb_tuner(model)
    x = image(b=3)
    alphas = torch.tensor([0.0, 0.5, 0.9])
    batched = model(x, alpha=alphas)
    looped = torch.cat([model(x[i : i + 1], alpha=float(a)) for i, a in enumerate(alphas)])
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method,options", CASES, ids=IDS)
def test_stage_two_changes_only_the_tuner(method: str, options: dict) -> None:
    _, model = make(method, options)
    model.train().freeze_base()
    base_before = [p.detach().clone() for p in model.base_parameters()]
    tuner_before = [p.detach().clone() for p in model.tuner_parameters()]
    assert tuner_before, "a method without tuner parameters cannot be trained"
    optimiser = torch.optim.Adam(model.tuner_parameters(), lr=1e-2)
    x = image()
    for _ in range(2):  # two steps: zero-initialised branches need one step to open up
        loss = (model(x, alpha=1.0) - x.flip(-1)).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert all(torch.equal(a, b) for a, b in zip(base_before, model.base_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(tuner_before, model.tuner_parameters()))
    assert all(not p.requires_grad for p in model.base_parameters())


@pytest.mark.parametrize("method,options", CASES, ids=IDS)
def test_fixed_alpha_cache_follows_parameter_updates(method: str, options: dict) -> None:
    _, model = make(method, options)
    x = image()
    with torch.no_grad():
        before = model(x, alpha=0.5)  # fills any cache
        perturb_tuner(model)  # in-place update, as an optimiser step
        after = model(x, alpha=0.5)
    model_fresh = copy.deepcopy(model)
    for _, layer in model_fresh.tunable_layers():
        cache = getattr(layer, "_cache", None)
        if cache is not None:
            cache.clear()
    torch.testing.assert_close(after, model_fresh(x, alpha=0.5), rtol=0, atol=0)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("method,options", CASES, ids=IDS)
def test_save_load_round_trip_is_bit_exact(method: str, options: dict, tmp_path) -> None:
    _, model = make(method, options)
    perturb_tuner(model)
    path = tmp_path / "model.safetensors"
    ftn.save(model, path, task="denoise", levels=[{"sigma": 20}, {"sigma": 80}])
    loaded = ftn.load(path, model=TinyNet())
    assert isinstance(loaded, ftn.TunableModel)
    assert loaded.method == method and loaded.options == model.options
    assert loaded.metadata["levels"] == [{"sigma": 20}, {"sigma": 80}]
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    x = image()
    assert torch.equal(loaded.eval()(x, alpha=0.6), model(x, alpha=0.6))


@pytest.mark.parametrize("method,options", CASES, ids=IDS)
def test_unusual_convs(method: str, options: dict) -> None:
    reference, model = make(method, options, net_cls=OddConvNet)
    x = image(h=17, w=22)
    torch.testing.assert_close(model(x, alpha=0.7), reference(x), rtol=0, atol=1e-6)
    perturb_tuner(model)
    assert torch.equal(model(x, alpha=0.0), reference(x))
    torch.testing.assert_close(
        model(x, alpha=torch.full((1, 1, 17, 22), 0.3)), model(x, alpha=0.3), rtol=1e-5, atol=1e-5
    )
    if model.capabilities.exact_export:
        torch.testing.assert_close(model.export(0.3)(x), model(x, alpha=0.3), rtol=1e-5, atol=1e-5)


def test_ftn_per_pixel_follows_equation_3() -> None:
    """Y = (1 - A) (X * f) + A (X * FTN(f)) on a single grouped, strided conv, computed by hand."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    model = ftn.attach(nn.Sequential(conv), "ftn", groups=3)
    perturb_tuner(model)
    layer = model.model[0]
    x = torch.randn(2, 4, 10, 12)
    a = torch.rand(2, 1, 5, 6)
    f, g = layer.base.weight, layer.transformed_kernel()
    y1 = nn.functional.conv2d(x, f, conv.bias, stride=2, padding=1, groups=2)
    y2 = nn.functional.conv2d(x, g, conv.bias, stride=2, padding=1, groups=2)
    torch.testing.assert_close(model(x, alpha=a), (1 - a) * y1 + a * y2, rtol=1e-5, atol=1e-5)


def test_map_is_resized_to_each_layer_grid() -> None:
    _, model = make("ftn", {}, net_cls=OddConvNet)
    perturb_tuner(model, scale=0.2)
    x = image(b=1, h=32, w=32)
    left = torch.zeros(1, 1, 32, 32)
    left[..., :16] = 1.0
    y = model(x, alpha=left)
    y0, y1 = model(x, alpha=0.0), model(x, alpha=1.0)
    # Far from the edge of the mask the output is that of the global alpha on that side.
    torch.testing.assert_close(y[..., 4:28, :6], y1[..., 4:28, :6], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y[..., 4:28, 26:], y0[..., 4:28, 26:], rtol=1e-4, atol=1e-4)


def test_attach_targets_and_exclusions() -> None:
    _, by_regex = make("ftn", {"targets": r"blocks\..*"})
    assert by_regex.target_names == ["blocks.0.conv1", "blocks.0.conv2", "blocks.1.conv1", "blocks.1.conv2"]
    _, excluded = make("ftn", {"exclude": r"tail"})
    assert "tail" not in excluded.target_names and "head" in excluded.target_names
    _, by_type = make("dni", {"targets": [nn.PReLU]})
    assert by_type.target_names == ["act"]
    _, by_name = make("adafm", {"targets": ["head", "tail"]})
    assert by_name.target_names == ["head", "tail"]
    _, blocks = make("cfsnet", {})
    assert blocks.target_names == ["blocks.0", "blocks.1"]


def test_tuner_and_base_parameters_partition_the_model() -> None:
    for method, options in CASES:
        _, model = make(method, options)
        tuner = {id(p) for p in model.tuner_parameters()}
        base = {id(p) for p in model.base_parameters()}
        assert tuner and base and not tuner & base
        assert tuner | base == {id(p) for p in model.parameters()}


def test_ftn_parameter_count_follows_the_kernel_layout() -> None:
    """C_out is the FTN's channel axis: 2 x (C_out^2 / G + C_out) conv + 2 C_out PReLU + 1 skip weight."""
    conv = nn.Conv2d(16, 64, 3)
    for groups in (1, 4, 16):
        model = ftn.attach(nn.Sequential(conv), "ftn", groups=groups)
        expected = 2 * (64 * 64 // groups + 64) + 2 * 64 + 1
        assert sum(p.numel() for p in model.tuner_parameters()) == expected
        conv = model.export(0.0)[0]
    # C_out = 6 is not divisible by 4: gcd(4, 6) = 2 groups.
    model = ftn.attach(nn.Conv2d(3, 6, 3), "ftn", groups=4)
    assert model.model.ftn.groups == 2


def test_alpha_context_manager_restores() -> None:
    _, model = make("ftn", {})
    model.set_alpha(0.2)
    with model.alpha(0.9):
        assert model.current_alpha == 0.9
    assert model.current_alpha == 0.2


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (float("nan"), ValueError, "NaN"),
        (-0.1, ValueError, r"\[0, 1\].*allow_extrapolation"),
        (1.5, ValueError, r"\[0, 1\]"),
        (torch.tensor([[0.5]]), ValueError, "rank 2"),
        (torch.zeros(1, 3, 4, 4), ValueError, "one channel"),
        (torch.tensor([0.2, float("nan")]), ValueError, "NaN"),
        ("0.5", TypeError, "number"),
        (True, TypeError, "number"),
    ],
)
def test_bad_alpha_is_refused_with_a_clear_error(bad, error, match) -> None:
    _, model = make("ftn", {})
    with pytest.raises(error, match=match):
        model.set_alpha(bad)
    assert model.current_alpha == 0.0


def test_per_sample_alpha_must_match_the_batch() -> None:
    _, model = make("ftn", {})
    with pytest.raises(ValueError, match="one alpha per image"):
        model(image(b=2), alpha=torch.tensor([0.1, 0.2, 0.3]))


def test_extrapolation_behind_an_option() -> None:
    torch.manual_seed(0)
    model = ftn.attach(TinyNet(), "ftn", allow_extrapolation=True)
    perturb_tuner(model)
    x = image()
    y = model(x, alpha=1.5)
    torch.testing.assert_close(model.export(1.5)(x), y, rtol=1e-5, atol=1e-5)


def test_bad_arguments_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="unknown method 'lora'.*choose one of"):
        ftn.attach(TinyNet(), "lora")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['group'\].*groups"):
        ftn.attach(TinyNet(), "ftn", group=4)
    with pytest.raises(ValueError, match="depth must be 2"):
        ftn.attach(TinyNet(), "ftn", depth=5)
    with pytest.raises(ValueError, match="found no target modules"):
        ftn.attach(TinyNet(), "ftn", targets=r"nothing\..*")
    with pytest.raises(ValueError, match="nn.Conv2d, nn.ConvTranspose2d and nn.Linear layers only"):
        ftn.attach(TinyNet(), "ftn", targets=["act"])
    with pytest.raises(ValueError, match="block_pattern"):
        ftn.attach(nn.Sequential(nn.Conv2d(3, 3, 3)), "cfsnet")
    with pytest.raises(ValueError, match="already has a tuning method"):
        ftn.attach(ftn.attach(TinyNet(), "ftn").model, "dni")
    with pytest.raises(TypeError, match="nn.Module"):
        ftn.attach("not a model", "ftn")  # type: ignore[arg-type]


def test_methods_registry_lists_capabilities() -> None:
    assert set(ftn.METHODS) == {"ftn", "dni", "adafm", "cfsnet", "dynamic_net"}
    caps = {name: spec.capabilities(spec.config()) for name, spec in ftn.METHODS.items()}
    assert {n for n, c in caps.items() if c.exact_export} == {"ftn", "dni", "adafm"}
    assert all(c.per_pixel and c.per_sample for c in caps.values())
    assert not ftn.METHODS["adafm"].capabilities(ftn.METHODS["adafm"].config(kernel_size=5)).exact_export


def test_dni_sees_tensors_moved_or_assigned_after_a_forward() -> None:
    """DNI collects its tensors once for speed: a dtype move or a newly assigned parameter must still count."""
    torch.manual_seed(0)
    model = ftn.attach(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)), "dni").eval()
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        model(x, alpha=0.5)
        model.double()
        torch.testing.assert_close(model(x.double(), alpha=0.5), model.export(0.5)(x.double()))
        first = model.model[0].base
        first.weight = nn.Parameter(torch.zeros_like(first.weight))
        torch.testing.assert_close(model(x.double(), alpha=0.5), model.export(0.5)(x.double()))


@pytest.mark.parametrize(
    ("build", "channels"),
    [
        (lambda: TinyNet(), 3),  # the targets are inside: the network itself, its convs swapped
        (lambda: nn.Conv2d(1, 4, 3, padding=1), 1),  # the whole network is the one target
    ],
    ids=["inner-targets", "root-target"],
)
def test_base_network_is_the_attached_network(build, channels: int) -> None:
    net = build()
    net.arch_options = {"size": "tiny"}  # an attribute the file records: it must be found through the wrapper
    model = ftn.attach(net, "ftn")
    assert model.base_network is net
    assert not isinstance(model.base_network, TunableLayer)
    assert model.base_network.arch_options == {"size": "tiny"}
    assert model.image_channels == channels  # no in_channels option: read from the first conv
    net.arch_options = {"in_channels": 7}
    assert model.image_channels == 7


# -- other people's layers: Linear, ConvTranspose2d, BatchNorm, LayerNorm ---------------------------


class ChannelLastMLPNet(nn.Module):
    """ConvNeXt-style: a conv, then LayerNorm and an MLP of nn.Linear on channel-last (B, H, W, C) maps."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.norm = nn.LayerNorm(c)
        self.fc1 = nn.Linear(c, 2 * c)
        self.fc2 = nn.Linear(2 * c, c, bias=False)
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(x).permute(0, 2, 3, 1)
        y = y + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(y))))
        return self.tail(y.permute(0, 3, 1, 2))


class TransposeBNNet(nn.Module):
    """A stride-2 conv, BatchNorm (non-trivial running statistics), a grouped ConvTranspose2d called
    with output_size, and a bias-free ConvTranspose2d."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, groups=2)
        self.out = nn.ConvTranspose2d(6, 3, 3, padding=1, bias=False)
        randomise_norms(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.down(x)))
        return self.out(torch.relu(self.up(y, output_size=x.shape[-2:])))


class TokenNet(nn.Module):
    """An MLP over a token sequence (B, N, C): per-pixel maps have no grid to reach it."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, c)
        self.norm = nn.LayerNorm(c)
        self.fc2 = nn.Linear(c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        out = self.fc2(torch.relu(self.norm(self.fc1(tokens))))
        return out.transpose(1, 2).reshape(b, c, h, w)


def tiny_dncnn() -> nn.Module:
    from ftn.archs import DnCNN

    return randomise_norms(DnCNN(depth=4, channels=8, in_channels=3, out_channels=3))


@torch.no_grad()
def randomise_norms(net: nn.Module) -> nn.Module:
    """Running statistics and affine tensors away from their defaults, as a trained network has them."""
    gen = torch.Generator().manual_seed(7)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
    return net


FOREIGN_NETS = {"mlp": ChannelLastMLPNet, "transpose-bn": TransposeBNNet, "tokens": TokenNet, "dncnn": tiny_dncnn}
FOREIGN_METHODS = [("ftn", {}), ("ftn", {"groups": 4, "spatial": True}), ("dni", {}), ("adafm", {"kernel_size": 1})]
FOREIGN_CASES = [(n, m, o) for n in FOREIGN_NETS for m, o in FOREIGN_METHODS] + [
    (n, "adafm", {"kernel_size": 3}) for n in ("transpose-bn", "dncnn")
]
FOREIGN_IDS = [f"{n}-{m}" + "".join(f"-{k}{v}" for k, v in o.items()) for n, m, o in FOREIGN_CASES]


def make_foreign(net: str, method: str, options: dict) -> tuple[nn.Module, ftn.TunableModel]:
    torch.manual_seed(0)
    base = FOREIGN_NETS[net]().eval()
    return copy.deepcopy(base), ftn.attach(base, method, **options).eval()


@pytest.mark.parametrize(
    ("net", "kinds"),
    [
        ("mlp", {"head": nn.Conv2d, "fc1": nn.Linear, "fc2": nn.Linear, "tail": nn.Conv2d}),
        ("transpose-bn", {"down": nn.Conv2d, "up": nn.ConvTranspose2d, "out": nn.ConvTranspose2d}),
        ("tokens", {"fc1": nn.Linear, "fc2": nn.Linear}),
    ],
)
@pytest.mark.parametrize("method", ["ftn", "adafm"])
def test_kernel_methods_target_conv_transpose_and_linear_by_default(net: str, kinds: dict, method: str) -> None:
    _, model = make_foreign(net, method, {})
    assert model.target_names == list(kinds)
    for name, layer in model.tunable_layers():
        assert type(layer.base) is kinds[name]


@pytest.mark.parametrize(("net", "method", "options"), FOREIGN_CASES, ids=FOREIGN_IDS)
def test_foreign_layers_identity_at_init_and_alpha_zero_exact(net: str, method: str, options: dict) -> None:
    reference, model = make_foreign(net, method, options)
    x = image(h=17, w=22)
    torch.testing.assert_close(model(x, alpha=0.7), reference(x), rtol=0, atol=1e-6)
    perturb_tuner(model)
    assert torch.equal(model(x, alpha=0.0), reference(x))
    assert not torch.allclose(model(x, alpha=1.0), reference(x), atol=1e-4), "tuner has no effect"


@pytest.mark.parametrize(("net", "method", "options"), FOREIGN_CASES, ids=FOREIGN_IDS)
def test_foreign_layers_export_equals_the_tunable_model(net: str, method: str, options: dict) -> None:
    reference, model = make_foreign(net, method, options)
    perturb_tuner(model)
    x = image(h=17, w=22)
    if not model.capabilities.exact_export:
        pytest.skip("this method does not export")
    for alpha in (0.0, 0.35, 1.0):
        plain = model.export(alpha)
        assert type(plain) is type(reference) and not any(isinstance(m, TunableLayer) for m in plain.modules())
        assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
        torch.testing.assert_close(plain(x), model(x, alpha=alpha), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("net", "method", "options"), FOREIGN_CASES, ids=FOREIGN_IDS)
def test_foreign_layers_per_sample_alpha_equals_a_loop(net: str, method: str, options: dict) -> None:
    _, model = make_foreign(net, method, options)
    perturb_tuner(model)
    x = image(b=3, h=17, w=22)
    alphas = torch.tensor([0.0, 0.5, 0.9])
    looped = torch.cat([model(x[i : i + 1], alpha=float(a)) for i, a in enumerate(alphas)])
    torch.testing.assert_close(model(x, alpha=alphas), looped, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("net", "method", "options"), FOREIGN_CASES, ids=FOREIGN_IDS)
def test_foreign_layers_constant_map_equals_scalar(net: str, method: str, options: dict) -> None:
    _, model = make_foreign(net, method, options)
    perturb_tuner(model)
    x = image(h=17, w=22)
    if net == "tokens":  # (B, N, C) outputs have no grid: a clear refusal, not a silent broadcast
        with pytest.raises(ValueError, match="per-pixel alpha map needs .*channel-last"):
            model(x, alpha=torch.full((2, 1, 17, 22), 0.4))
        return
    torch.testing.assert_close(model(x, alpha=torch.full((2, 1, 17, 22), 0.4)), model(x, alpha=0.4), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("net", "method", "options"), FOREIGN_CASES, ids=FOREIGN_IDS)
def test_stage_two_keeps_the_base_and_its_norms_frozen(net: str, method: str, options: dict) -> None:
    """Stage 2 in training mode: no base tensor moves (BatchNorm running statistics included), the
    base's norm layers stay in eval mode, and alpha 0 still reproduces the base bit for bit."""
    reference, model = make_foreign(net, method, options)
    model.freeze_base().train()
    assert model.training and model.base_norm_layers() == [
        m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm))
        and not any(m is t for _, layer in model.tunable_layers() for c, sub in layer.named_children() if c != "base"
                    for t in sub.modules())
    ]
    assert all(not m.training for m in model.base_norm_layers())
    tuner = {id(p) for p in model.tuner_parameters()}
    frozen = [(n, t.detach().clone()) for n, t in [*model.named_parameters(), *model.named_buffers()] if id(t) not in tuner]
    tuner_before = [p.detach().clone() for p in model.tuner_parameters()]
    optimiser = torch.optim.Adam(model.tuner_parameters(), lr=1e-2)
    x = image(h=17, w=22)
    for _ in range(3):
        loss = (model(x, alpha=1.0) - x.flip(-1)).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    current = dict([*model.named_parameters(), *model.named_buffers()])
    assert all(torch.equal(current[n], t) for n, t in frozen), [n for n, t in frozen if not torch.equal(current[n], t)]
    assert any(not torch.equal(a, b) for a, b in zip(tuner_before, model.tuner_parameters()))
    model.eval()
    assert torch.equal(model(x, alpha=0.0), reference(x))


def test_train_before_freeze_still_trains_the_norms() -> None:
    """Only a frozen base keeps its norms in eval mode: an unfrozen tunable model trains as asked."""
    _, model = make_foreign("dncnn", "ftn", {})
    model.train()
    assert all(m.training for m in model.base_norm_layers())
    model.freeze_base()
    assert not any(m.training for m in model.base_norm_layers())
    model.train()
    assert not any(m.training for m in model.base_norm_layers())
    assert nn.Sequential(model).train().training and not any(m.training for m in model.base_norm_layers())


def test_a_linear_layer_is_a_1x1_conv_with_c_out_channels() -> None:
    """FTN and AdaFM on nn.Linear over (B, H, W, C) equal the same tuners on the equivalent 1x1 conv,
    for a number and for a per-pixel map."""
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 1)
    linear = nn.Linear(5, 7)
    with torch.no_grad():
        linear.weight.copy_(conv.weight[:, :, 0, 0])
        linear.bias.copy_(conv.bias)
    x = torch.rand(2, 5, 6, 9)
    a = torch.rand(2, 1, 6, 9)
    for method, options in (("ftn", {"groups": 1}), ("ftn", {"groups": 4, "depth": 3}), ("adafm", {})):
        by_conv = ftn.attach(nn.Sequential(copy.deepcopy(conv)), method, **options)
        by_linear = ftn.attach(nn.Sequential(copy.deepcopy(linear)), method, **options)
        perturb_tuner(by_conv)
        assert [p.shape for p in by_conv.tuner_parameters()] == [p.shape for p in by_linear.tuner_parameters()]
        with torch.no_grad():
            for p, q in zip(by_conv.tuner_parameters(), by_linear.tuner_parameters()):
                q.copy_(p)
        for alpha in (0.6, a):
            expected = by_conv(x, alpha=alpha)
            got = by_linear(x.permute(0, 2, 3, 1), alpha=alpha).permute(0, 3, 1, 2)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_conv_transpose_kernel_is_read_with_its_output_channels_first(groups: int) -> None:
    """A stride-1 ConvTranspose2d is a conv with the kernel flipped and regrouped to (C_out, C_in/g, k, k):
    the layout the methods read (so FTN's channel c is output channel c), and it round-trips."""
    from ftn.methods._kernels import from_out_in, to_out_in

    torch.manual_seed(0)
    up = nn.ConvTranspose2d(8, 12, 3, padding=1, groups=groups, bias=False)
    kernel = to_out_in(up, up.weight)
    assert kernel.shape == (12, 8 // groups, 3, 3)
    assert torch.equal(from_out_in(up, kernel), up.weight)
    x = torch.rand(2, 8, 7, 5)
    as_conv = nn.functional.conv2d(x, kernel.flip(-1, -2), padding=1, groups=groups)
    torch.testing.assert_close(up(x), as_conv, rtol=1e-5, atol=1e-6)
    model = ftn.attach(nn.Sequential(up), "ftn")
    assert model.model[0].ftn.body[0].in_channels == 12


def test_adafm_refuses_a_spatial_filter_on_linear_layers() -> None:
    with pytest.raises(ValueError, match="kernel_size=3 .*nn.Linear.*exclude"):
        ftn.attach(ChannelLastMLPNet(), "adafm", kernel_size=3)
    model = ftn.attach(ChannelLastMLPNet(), "adafm", kernel_size=3, targets=[nn.Conv2d])
    assert model.target_names == ["head", "tail"]
