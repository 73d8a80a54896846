"""A residual-quantized autoencoder (RQ-VAE, as TIGER uses it) that turns content vectors into semantic codes.

TIGER (Rajput et al., NeurIPS 2023): an MLP encoder maps an item's content vector to a latent z; L codebooks
quantize it residually (level 1 quantizes z, level 2 what level 1 left over, ...), so the first code is a coarse
cluster and later codes refine it; an MLP decoder reconstructs the content vector from the sum of the chosen
code vectors. Loss = reconstruction MSE + sum over levels of the codebook term ||sg[r_l] - e_l||^2 and the
commitment term beta ||r_l - sg[e_l]||^2, gradients passing the quantizer straight through. Codebooks start
from k-means (k-means++ seeds) over the residuals of the catalogue (TIGER: k-means on the first batch) so no
code starts dead, and a code no item uses after an epoch is moved to where its codebook fits worst
(:meth:`RQVAE.restart_dead_codes`; not in TIGER, which only has the init).

Why a module of our own and not `vector-quantize-pytorch`'s ResidualVQ: the whole quantizer is ~40 lines
here, while the library brings einops/einx, EMA codebook updates and code-expiry heuristics by default (not
TIGER's losses), draws its k-means init from torch's global random stream, and would hide the per-level
residuals this module reports (and the tests check). Here every draw comes from one seeded generator, so the
same content and settings give the same codes bit for bit, which the on-disk code cache relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RQVAEConfig:
    levels: int = 3
    codebook_size: int = 256
    latent_dim: int = 32
    hidden: tuple[int, ...] = (512, 256, 128)
    beta: float = 0.25
    epochs: int = 200
    batch_size: int = 1024
    lr: float = 1e-3
    kmeans_iters: int = 20
    seed: int = 0


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means of x (N, D) -> centroids (k, D), seeded by k-means++ (each next seed drawn with
    probability proportional to its squared distance from the seeds so far), so well-separated groups each
    get a seed instead of two seeds landing in one group. With N < k the surplus seeds repeat points (codes
    that stay unused); an empty cluster keeps its previous centroid."""
    n = len(x)
    first = int(torch.randint(0, n, (1,), generator=generator))
    centroids = [x[first]]
    dist = ((x - x[first]) ** 2).sum(1)  # (N,) squared distance to the nearest seed
    for _ in range(1, k):
        if float(dist.sum()) <= 0:  # every point is a seed already
            pick = int(torch.randint(0, n, (1,), generator=generator))
        else:
            pick = int(torch.multinomial(dist / dist.sum(), 1, generator=generator))
        centroids.append(x[pick])
        dist = torch.minimum(dist, ((x - x[pick]) ** 2).sum(1))
    centroids = torch.stack(centroids).clone()  # (k, D)
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(dim=1)  # (N,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # (k, D)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)  # (k, 1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """Encoder MLP -> L residual codebooks -> decoder MLP. `quantize` gives codes; `forward` the losses."""

    def __init__(self, input_dim: int, config: RQVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = _mlp([input_dim, *config.hidden, config.latent_dim])
        self.decoder = _mlp([config.latent_dim, *reversed(config.hidden), input_dim])
        self.codebooks = nn.Parameter(torch.zeros(config.levels, config.codebook_size, config.latent_dim))

    def residual_quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """z (B, d) -> codes (B, L), per-level residuals before quantizing [(B, d)] * L, and the commitment +
        codebook loss. The next residual subtracts a detached code vector, so each codebook learns only from
        its own level's term."""
        residual, codes, residuals = z, [], []
        loss = z.new_zeros(())
        for level in range(self.config.levels):
            book = self.codebooks[level]  # (K, d)
            code = torch.cdist(residual, book).argmin(dim=1)  # (B,)
            e = book[code]  # (B, d)
            loss = (
                loss + F.mse_loss(e, residual.detach()) + self.config.beta * F.mse_loss(residual, e.detach())
            )
            residuals.append(residual)
            codes.append(code)
            residual = residual - e.detach()
        return torch.stack(codes, dim=1), residuals, loss

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D_in) -> (reconstruction loss, quantization loss)."""
        z = self.encoder(x)  # (B, d)
        codes, _, q_loss = self.residual_quantize(z)
        quantized = self.codebooks[torch.arange(self.config.levels), codes].sum(dim=1)  # (B, d)
        straight = (
            z + (quantized - z).detach()
        )  # straight-through: the decoder's gradient reaches the encoder
        return F.mse_loss(self.decoder(straight), x), q_loss

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """k-means over the catalogue's latents (level 1) and then over what each level leaves (level 2...)."""
        residual = self.encoder(x)  # (N, d)
        for level in range(self.config.levels):
            book = kmeans(residual, self.config.codebook_size, self.config.kmeans_iters, generator)
            self.codebooks[level] = book
            residual = residual - book[torch.cdist(residual, book).argmin(dim=1)]

    @torch.no_grad()
    def restart_dead_codes(self, x: torch.Tensor, generator: torch.Generator) -> int:
        """Move every code no item uses to the residual of an item drawn with probability proportional to its
        squared quantization error at that level (where the codebook fits worst) -> codes moved.

        Why: a code that no residual picks gets no gradient and stays dead; two groups then share one code
        and only the deeper levels tell them apart. Not in TIGER (which relies on the k-means init); the
        usual fix of SoundStream/Jukebox-style quantizers."""
        residual, moved = self.encoder(x), 0  # (N, d)
        for level in range(self.config.levels):
            book = self.codebooks[level]  # (K, d)
            code = torch.cdist(residual, book).argmin(dim=1)  # (N,)
            error = ((residual - book[code]) ** 2).sum(1)  # (N,)
            dead = (torch.bincount(code, minlength=len(book)) == 0).nonzero().squeeze(1)  # (n_dead,)
            if len(dead) and float(error.sum()) > 0:
                picks = torch.multinomial(
                    error / error.sum(), len(dead), replacement=True, generator=generator
                )
                book[dead] = residual[picks]
                moved += len(dead)
                code = torch.cdist(residual, book).argmin(dim=1)
            residual = residual - book[code]
        return moved

    @torch.no_grad()
    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (N, D_in) -> codes (N, L) and the residual each level quantized [(N, d)] * L."""
        codes, residuals, _ = self.residual_quantize(self.encoder(x))
        return codes, residuals


def train_rqvae(vectors: torch.Tensor, config: RQVAEConfig) -> tuple[torch.Tensor, dict]:
    """Fit an RQ-VAE on item content vectors (N, D) alone (no interaction is read) -> (codes (N, L), facts).

    Inputs are standardised per dimension first (frozen text vectors are far from unit scale, and the MSE
    would otherwise be dominated by a few dimensions). Facts: final reconstruction MSE, per-level mean residual
    norm, codebook usage (share of codes used) and perplexity (exp of the code entropy) per level."""
    generator = torch.Generator().manual_seed(config.seed)
    x = vectors.float()
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp(min=1e-6)
    x = (x - mean) / std  # (N, D)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = RQVAE(x.shape[1], config)
    model.init_codebooks(x, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n = len(x)
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            batch = x[order[start : start + config.batch_size]]  # (b, D)
            recon, q_loss = model(batch)
            loss = recon + q_loss
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"RQ-VAE loss is {loss.item()}: lower the tokenizer's lr (now {config.lr})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.restart_dead_codes(x, generator)
    model.eval()
    with torch.no_grad():
        recon, _ = model(x)
        codes, residuals = model.quantize(x)
    facts: dict = {"recon_mse": float(recon), "levels": {}}
    for level in range(config.levels):
        counts = torch.bincount(codes[:, level], minlength=config.codebook_size).float()
        p = counts[counts > 0] / n
        facts["levels"][level + 1] = {
            "residual_norm": float(residuals[level].norm(dim=1).mean()),
            "usage": float((counts > 0).float().mean()),
            "perplexity": float(math.exp(float(-(p * p.log()).sum()))),
        }
    return codes, facts
