import pytest
import torch

from vaecodec.errors import ModelError
from vaecodec.models import build_model, model_names
from vaecodec.models.vae import VAEConfig


def tiny(model="vae-mlp", **kw):
    arch = model.split("-")[1]
    cfg = dict(
        input_shape=[1, 8, 8],
        latent_dim=3,
        arch=arch,
        hidden=[32],
        channels=[4, 8],
        deterministic=model.startswith("ae"),
    )
    cfg.update(kw)
    return build_model(model, cfg)


def test_registry_lists_vae_models_and_rejects_unknown():
    for name in ["vae-mlp", "vae-conv", "ae-mlp", "ae-conv"]:
        assert name in model_names("vae")
    with pytest.raises(ModelError, match="vae-mlp"):
        build_model("vae-transformer", {})


@pytest.mark.parametrize("model", ["vae-mlp", "vae-conv", "ae-mlp", "ae-conv"])
@pytest.mark.parametrize("lik", ["bernoulli", "logistic"])
def test_forward_shapes_and_loss(model, lik):
    m = tiny(model, likelihood=lik)
    x = torch.bernoulli(torch.rand(5, 1, 8, 8))
    out = m(x)
    assert out["elbo"].shape == out["recon"].shape == out["kl"].shape == (5,)
    assert out["kl_per_dim"].shape == (3,)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert m.sample(4).shape == (4, 1, 8, 8)
    if model.startswith("ae"):
        assert torch.all(out["kl"] == 0)
    else:
        assert torch.all(out["kl"] > 0)


def test_config_round_trip():
    m = tiny(likelihood="gaussian-learned", sigma=0.3)
    m2 = build_model("vae-mlp", m.config_dict())
    assert m2.config == m.config
    assert m2.likelihood.sigma == pytest.approx(0.3)


def test_conv_needs_divisible_sizes():
    with pytest.raises(ModelError, match="divisible by 4"):
        build_model("vae-conv", dict(input_shape=[1, 10, 10], arch="conv"))


def test_free_bits_changes_loss_not_reported_kl():
    torch.manual_seed(0)
    m = tiny()
    x = torch.bernoulli(torch.rand(16, 1, 8, 8))
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(1)
    b = m(x, free_bits=5.0)
    assert torch.allclose(a["kl"], b["kl"])
    assert b["loss"] > a["loss"]  # each dim's KL is clamped up to 5 nats in the loss


def test_beta_weights_kl():
    torch.manual_seed(0)
    m = tiny()
    x = torch.bernoulli(torch.rand(16, 1, 8, 8))
    torch.manual_seed(1)
    a = m(x, beta=1.0)
    torch.manual_seed(1)
    b = m(x, beta=3.0)
    assert (b["loss"] - a["loss"]).item() == pytest.approx(2 * a["kl"].mean().item(), rel=1e-4)


def test_iwae_bound_is_tighter_than_elbo_and_k1_matches_elbo_in_mean():
    torch.manual_seed(0)
    m = tiny(latent_dim=2)
    x = torch.bernoulli(torch.rand(8, 1, 8, 8))
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(50):
        opt.zero_grad()
        m(x)["loss"].backward()
        opt.step()
    m.eval()
    torch.manual_seed(2)
    elbo = torch.stack([m(x)["elbo"] for _ in range(200)]).mean(0)
    iw1 = torch.stack([m.iwae_log_likelihood(x, 1) for _ in range(200)]).mean(0)
    iw200 = m.iwae_log_likelihood(x, 200, chunk=64)
    assert torch.allclose(iw1, elbo, atol=0.5)
    assert torch.all(iw200 >= elbo - 0.05)
    assert (iw200 - elbo).mean() > 0.01


def test_ae_has_no_likelihood_bound():
    m = tiny("ae-mlp")
    with pytest.raises(ValueError):
        m.iwae_log_likelihood(torch.rand(2, 1, 8, 8), 5)


def test_vaeconfig_validates():
    with pytest.raises(ValueError):
        VAEConfig(arch="rnn")
    with pytest.raises(ValueError):
        VAEConfig(latent_dim=0)
